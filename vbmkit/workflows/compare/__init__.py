"""``vbmkit compare``: agreement of vbmkit's outputs with CAT12's or SPM12's (or a second vbmkit run).

``run`` (the entry point, ROI level, files), ``subjects`` (per-subject level), ``pairs``
(both sides on one grid, volumes, ROI tables), ``glm`` (contrast level, from a GlmConfig).
"""

from vbmkit.workflows.compare.run import DEFINITIONS, run_compare

__all__ = ["DEFINITIONS", "run_compare"]
