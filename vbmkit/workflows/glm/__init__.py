"""``vbmkit glm``: the voxel-wise GLM with subsamples and permutations.

``run`` (inputs, checks, the cached run), ``outputs`` (fits and every file of the output
contract), ``resources`` (counts and memory checked before any allocation).
"""

from vbmkit.workflows.glm.outputs import CLUSTER_COLUMNS, output_files
from vbmkit.workflows.glm.run import run_glm

__all__ = ["CLUSTER_COLUMNS", "output_files", "run_glm"]
