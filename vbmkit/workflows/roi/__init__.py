"""``vbmkit roi``: regional GM/WM(/CSF) volumes of an atlas and ROI statistics.

``run`` (inputs, covariates, the cached run, tables, statistics), ``inputs`` (finding each
subject's maps), ``maps`` (template-space volumes and the value checks of one map), ``native``
(native-space volumes as CAT12 measures them).
"""

from vbmkit.workflows.roi.inputs import find_subject_maps
from vbmkit.workflows.roi.run import run_roi

__all__ = ["find_subject_maps", "run_roi"]
