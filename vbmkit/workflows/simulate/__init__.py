"""``vbmkit simulate``: a synthetic cohort with planted effects, written as a BIDS-like folder.

``run``: the disk estimate, the checks before writing and the cohort writer (the images come
from :mod:`vbmkit.simulate`, the pure phantom code).
"""

from vbmkit.workflows.simulate.run import (
    AGE_REGIONS,
    GROUP_REGIONS,
    DiskEstimate,
    check_disk,
    estimate_disk,
    simulate_cohort,
)

__all__ = ["AGE_REGIONS", "GROUP_REGIONS", "DiskEstimate", "check_disk", "estimate_disk", "simulate_cohort"]
