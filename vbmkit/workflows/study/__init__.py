"""``vbmkit run study.yaml`` and ``vbmkit init``: the whole study, stage by stage, resumable.

``plan`` (the YAML validated into a StudyPlan), ``run`` (the stages in order, provenance, report),
``state`` (what the stages hand to each other), ``stages`` (qc, glm, roi and compare adapters),
``qc`` (sample homogeneity), ``provenance`` (what was run, with which inputs), ``init`` (a study
YAML from a folder of images and a covariate table).
"""

from vbmkit.workflows.study.plan import StudyPlan, load_study
from vbmkit.workflows.study.run import run_study

__all__ = ["StudyPlan", "load_study", "run_study"]
