"""``vbmkit demo``: a toy cohort through the GLM in seconds (``toy``), or a simulated cohort
through the whole study (``study``: ``vbmkit run --demo`` and ``vbmkit demo --full``).
"""

from vbmkit.workflows.demo.study import DEMO_PREPROCESS, demo_yaml_text, run_study_demo
from vbmkit.workflows.demo.toy import run_demo

__all__ = ["DEMO_PREPROCESS", "demo_yaml_text", "run_demo", "run_study_demo"]
