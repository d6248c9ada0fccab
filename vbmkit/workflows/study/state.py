"""What the stages of one study run hand to each other (typed, instead of a loose dict)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vbmkit.config import GlmConfig
from vbmkit.io.ownership import OwnedFolder
from vbmkit.workflows.preprocess.run import PreprocessSummary
from vbmkit.workflows.study.plan import StudyPlan
from vbmkit.workflows.subjects import read_table, without_subjects


@dataclass
class StudyState:
    """The study folder and what each finished stage left for the next.

    Attributes
    ----------
    owned : OwnedFolder
        ``OUT``, claimed by ``vbmkit run``; stages replace their sub-folders through it.
    preprocess : PreprocessSummary or None
        The batch summary (None when the study starts from maps).
    qc : dict or None
        ``OUT/qc/qc.json`` (None when QC was skipped: fewer than 3 maps).
    covariates_path : Path or None
        ``OUT/covariates.tsv``: the covariates with TIV merged in (None without covariates).
    glm_settings : GlmConfig or None
        The settings the glm stage ran with (paths resolved against the YAML); the compare stage
        uses them whole.
    glm : dict or None
        ``OUT/glm/summary.json`` of the glm stage.
    roi : dict or None
        ``OUT/roi/roi_summary.json`` of the roi stage.
    """

    owned: OwnedFolder
    preprocess: PreprocessSummary | None = None
    qc: dict[str, Any] | None = None
    covariates_path: Path | None = None
    glm_settings: GlmConfig | None = None
    glm: dict[str, Any] | None = None
    roi: dict[str, Any] | None = None

    def excluded(self, plan: StudyPlan) -> set[str]:
        """Names of the subjects QC flagged, when the study excludes them (else empty)."""
        if self.qc is None or not plan.qc.exclude_flagged:
            return set()
        return set(self.qc["flagged"])

    def covariates(self, plan: StudyPlan, *, excluded: set[str] = frozenset()) -> pd.DataFrame | None:
        """The merged covariate table without the ``excluded`` subjects (None without covariates)."""
        if self.covariates_path is None:
            return None
        id_column = plan.config.inputs.id_column
        table = read_table(self.covariates_path, id_column=id_column)
        return without_subjects(table, excluded, id_column=id_column)
