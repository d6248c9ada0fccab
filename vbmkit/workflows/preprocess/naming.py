"""Names and settings hash of the preprocessing outputs: the output contract of one subject.

A finished subject is recognised by its report holding :func:`settings_hash` of the current
settings and by every file of :func:`output_paths` existing (``docs/preprocess.md``).
"""

from __future__ import annotations

from pathlib import Path

from vbmkit.config import PreprocessConfig
from vbmkit.workflows.stage import fingerprint

# Bump when a change of the pipeline changes its outputs: finished subjects are then redone.
PIPELINE_VERSION = 3
NATIVE_MAPS = ("p0", "p1", "p2", "p3")
WARPED_MAPS = ("mwp1", "mwp2")
# Settings that do not change outputs, so changing them does not redo finished subjects.
_NOT_HASHED = ("jobs",)
# Settings added after pipeline version 2 (deformed_priors: version 3): left out of the hash while at their default, so
# outputs made before they existed (with what is now their default) stay valid.
_HASHED_WHEN_CHANGED = ("registration_iterations", "deformed_priors")


def fwhm_tag(fwhm: float) -> str:
    """``6`` for 6.0 and ``4.5`` for 4.5: the number in CAT12-style names like ``s6mwp1``."""
    return f"{fwhm:g}"


def settings_hash(settings: PreprocessConfig) -> str:
    """A short hash of the settings that determine the outputs (and of the pipeline version)."""
    payload = settings.model_dump(mode="json", exclude=set(_NOT_HASHED))
    defaults = PreprocessConfig().model_dump(mode="json")
    for key in _HASHED_WHEN_CHANGED:
        if payload[key] == defaults[key]:
            del payload[key]
    payload["pipeline_version"] = PIPELINE_VERSION
    return fingerprint(payload)[:16]


def output_paths(out: Path, name: str, settings: PreprocessConfig) -> dict[str, Path]:
    """Every file one subject produces, by key (``p0``, ``mwp1``, ``s6mwp1``, ``report``, ...)."""
    mri = Path(out) / name / "mri"
    paths = {key: mri / f"{key}{name}.nii.gz" for key in (*NATIVE_MAPS, *WARPED_MAPS)}
    for fwhm in settings.fwhm:
        for key in WARPED_MAPS:
            tag = f"s{fwhm_tag(fwhm)}{key}"
            paths[tag] = mri / f"{tag}{name}.nii.gz"
    if settings.save_deformation:
        paths["y"] = mri / f"y_{name}.nii.gz"
    paths["report"] = Path(out) / name / "report" / f"{name}.json"
    return paths
