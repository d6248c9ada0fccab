"""Names and settings hash of the preprocessing outputs: the output contract of one subject.

A finished subject is recognised by its report holding :func:`settings_hash` of the current
settings and by every file of :func:`output_paths` existing (``docs/preprocess.md``).
"""

from __future__ import annotations

from pathlib import Path

from vbmkit.config import PreprocessConfig
from vbmkit.io.bids_write import TEMPLATE_SPACE, bids_entities, bids_name, subject_folder
from vbmkit.workflows.stage import fingerprint

# Bump when a change of the pipeline changes its outputs: finished subjects are then redone.
PIPELINE_VERSION = 7  # 4: the CSF/WM class (issue 18); 5: variational registration, push modulation (issue 13);
# 6: the variational registration's finest level keeps its velocity on the 3 mm grid (issue 13, speed);
# 7: the registration that deforms the priors of the second segmentation gets a 1.5 mm level
NATIVE_MAPS = ("p0", "p1", "p2", "p3")
WARPED_MAPS = ("mwp1", "mwp2")
# Settings that do not change outputs, so changing them does not redo finished subjects.
_NOT_HASHED = ("jobs",)
# Settings added after pipeline version 2 (deformed_priors: version 3): left out of the hash while at their default, so
# outputs made before they existed (with what is now their default) stay valid.
# layout, cat12_xml, roi_atlases: added with the CAT12/BIDS writers; maps are unchanged by them.
_HASHED_WHEN_CHANGED = ("registration_iterations", "deformed_priors", "layout", "cat12_xml", "roi_atlases",
                        "csf_wm_class")


def fwhm_tag(fwhm: float) -> str:
    """``6`` for 6.0 and ``4.5`` for 4.5: the number in CAT12-style names like ``s6mwp1``."""
    return f"{fwhm:g}"


def settings_hash(settings: PreprocessConfig) -> str:
    """A short hash of the settings that determine the outputs (and of the pipeline version)."""
    payload = settings.model_dump(mode="json", exclude=set(_NOT_HASHED))
    defaults = PreprocessConfig().model_dump(mode="json")
    for key in _HASHED_WHEN_CHANGED:
        if key in payload and payload[key] == defaults[key]:
            del payload[key]
    payload["pipeline_version"] = PIPELINE_VERSION
    return fingerprint(payload)[:16]


def output_paths(out: Path, name: str, settings: PreprocessConfig) -> dict[str, Path]:
    """Every file one subject produces, by key (``p0``, ``mwp1``, ``s6mwp1``, ``report``, ...).

    ``settings.layout`` ``cat12``: ``<out>/<name>/mri/<key><name>.nii.gz`` and
    ``<out>/<name>/report/<name>.json``; ``bids``: :func:`bids_paths`.
    """
    if settings.layout == "bids":
        return bids_paths(out, name, settings)
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


#: BIDS-derivatives name of each map: (extra entities, suffix); ``{space}`` is the template.
BIDS_MAPS = {
    "p0": ({"desc": "p0"}, "dseg"),
    "p1": ({"label": "GM"}, "probseg"),
    "p2": ({"label": "WM"}, "probseg"),
    "p3": ({"label": "CSF"}, "probseg"),
    "mwp1": ({"space": "{space}", "label": "GM", "desc": "modulated"}, "probseg"),
    "mwp2": ({"space": "{space}", "label": "WM", "desc": "modulated"}, "probseg"),
    "y": ({"from": "T1w", "to": "{space}", "mode": "image"}, "xfm"),
}


def map_kinds(settings: PreprocessConfig) -> list[str]:
    """The map kinds these settings write (``p0``..``p3``, ``mwp1``, ``mwp2``, ``s6mwp1``...), in order."""
    return [k for k in output_paths(Path("."), "x", settings) if k not in ("report", "y")]


def _bids_desc_smoothed(fwhm: float) -> str:
    """``s6modulated`` for 6 mm, ``s4p5modulated`` for 4.5 mm (BIDS labels are alphanumeric)."""
    return "s" + fwhm_tag(fwhm).replace(".", "p") + "modulated"


def subject_dir(out: Path, name: str, settings: PreprocessConfig) -> Path:
    """The folder of one subject's outputs: ``<out>/<name>`` or ``<out>/sub-X[/ses-Y]`` (bids)."""
    if settings.layout == "bids":
        return subject_folder(out, bids_entities(name))
    return Path(out) / name


def bids_paths(out: Path, name: str, settings: PreprocessConfig) -> dict[str, Path]:
    """The keys of :func:`output_paths` with BIDS-derivatives names (:data:`BIDS_MAPS`).

    Maps go to ``<out>/sub-X[/ses-Y]/anat/``, e.g. ``mwp1`` ->
    ``sub-01_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz``, ``s6mwp1`` ->
    ``..._label-GM_desc-s6modulated_probseg.nii.gz``; the report to ``<subject>/report/<name>.json``.
    """
    ent = bids_entities(name)
    folder = subject_folder(out, ent)

    def path(key: str, extra: dict[str, str], suffix: str) -> Path:
        fields = {k: v.format(space=TEMPLATE_SPACE) for k, v in extra.items()}
        return folder / "anat" / bids_name({**ent, **fields}, suffix)

    paths = {key: path(key, *BIDS_MAPS[key]) for key in (*NATIVE_MAPS, *WARPED_MAPS)}
    for fwhm in settings.fwhm:
        for key in WARPED_MAPS:
            extra, suffix = BIDS_MAPS[key]
            paths[f"s{fwhm_tag(fwhm)}{key}"] = path(key, {**extra, "desc": _bids_desc_smoothed(fwhm)}, suffix)
    if settings.save_deformation:
        paths["y"] = path("y", *BIDS_MAPS["y"])
    paths["report"] = folder / "report" / f"{name}.json"
    return paths


def cat12_xml_paths(out: Path, name: str, settings: PreprocessConfig) -> dict[str, Path]:
    """CAT12's XML files of one subject: ``cat_xml`` (report) and ``catroi_xml`` (ROI volumes).

    ``<out>/<name>/report/cat_<name>.xml`` and ``<out>/<name>/label/catROI_<name>.xml`` (CAT12's
    layout; ``<out>/sub-X[/ses-Y]/report|label/`` in the bids layout). They are not part of :func:`output_paths`: subjects finished before vbmkit wrote
    them stay finished. Empty when ``settings.cat12_xml`` is off; no ``catroi_xml`` when
    ``settings.roi_atlases`` is ``none``.
    """
    if not settings.cat12_xml:
        return {}
    folder = subject_dir(out, name, settings)
    paths = {"cat_xml": folder / "report" / f"cat_{name}.xml"}
    if settings.roi_atlases.strip().lower() != "none":
        paths["catroi_xml"] = folder / "label" / f"catROI_{name}.xml"
    return paths


def qc_image_path(out: Path, name: str, settings: PreprocessConfig) -> Path:
    """``<subject>/report/<name>_qc.png``: the visual QC figure (not part of :func:`output_paths`)."""
    return subject_dir(out, name, settings) / "report" / f"{name}_qc.png"


def claimed_entries(names: list[str], settings: PreprocessConfig) -> list[str]:
    """Top-level entries a preprocess run writes (for :meth:`vbmkit.io.ownership.OwnedFolder.register`).

    ``<name>/`` per subject (cat12 layout) or ``sub-X/`` (bids), plus ``dataset_description.json``
    and ``.bidsignore``.
    """
    folders = [f"{subject_dir(Path('.'), n, settings).parts[0]}/" for n in names]
    return [*dict.fromkeys(folders), "dataset_description.json", ".bidsignore"]
