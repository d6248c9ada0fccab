"""CAT12 output folders: find the maps and reports of each subject; read and write CAT12's XML.

Layouts (both searched recursively, so a folder of several CAT12 runs works too):

=============  ===========================================================================
standard       ``<dir>/mri/{p0,mwp1,mwp2,s6mwp1,...}<name>.nii``, ``<dir>/report/cat_<name>.xml``,
               ``<dir>/label/catROI_<name>.xml``
BIDS (flat)    ``sub-X/[ses-Y/]anat/{p0,mwp1,...}<name>.nii``, ``cat_<name>.xml`` and
               ``catROI_<name>.xml`` in the same ``anat`` folder
=============  ===========================================================================

``<name>`` is the input file name without extension (``sub-01_T1w``). vbmkit's own outputs use the
same prefixes (``<out>/<name>/mri/p0<name>.nii.gz``), so :func:`find_outputs` finds both.

CAT12's XML (``cat_io_xml``, root ``<S>``) stores a MATLAB struct: nested elements, numbers as
text (``1523.4``; vectors as ``[395.1 720.3 450.2 0 0]``), cell arrays of strings as ``<item>``
children. ``subjectmeasures/vol_abs_CGW`` is [CSF GM WM WMH ...] in mL; ``qualityratings`` holds
marks 0.5 (best) .. 10.5 (worst), percent = 105 - 10 * mark. Older CAT12 (before r1000, 2016)
wrote ``QAS/SM/{vol_TIV, vol_abs_CGW, vol_rel_CGW}`` and ratings under ``QAM/QM`` (``rms`` for IQR).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vbmkit.errors import ImageError, VbmkitError
from vbmkit.io.nifti import image_stem, is_image_path

#: Map prefixes of CAT12 (and vbmkit) outputs: native label/tissue maps, modulated warped maps,
#: unmodulated warped maps, Jacobian; smoothed maps are ``s<fwhm>`` + one of the warped kinds.
CAT12_KINDS = ("p0", "p1", "p2", "p3", "mwp1", "mwp2", "mwp3", "wp1", "wp2", "wp3", "wj_")
_SMOOTHED = re.compile(r"^s(\d+(?:\.\d+)?)(m?w[pc][123])")  # s6mwp1, s8mwc1, s4wp2
_REPORT_XML = re.compile(r"^cat_(?P<name>.+)\.xml$")
_ROI_XML = re.compile(r"^catROI_(?P<name>.+)\.xml$")  # catROIs_ (surface) does not match

#: Quality ratings of new CAT12 versions and their names under ``QAM/QM`` in old ones.
RATINGS = ("NCR", "ICR", "res_RMS", "IQR", "SIQR")
_OLD_RATINGS = {"NCR": "NCR", "ICR": "ICR", "res_RMS": "res_RMS", "IQR": "rms", "SIQR": "SIQR"}


class Cat12Error(VbmkitError):
    """A CAT12 file is unreadable or lacks a field vbmkit needs."""


# --------------------------------------------------------------------------------------------
# Finding outputs
# --------------------------------------------------------------------------------------------

@dataclass
class SubjectOutputs:
    """The files found for one subject.

    Attributes
    ----------
    name : str
        Subject name as in the file names (``sub-01_T1w``).
    maps : dict
        Map kind (``p0``, ``mwp1``, ``s6mwp1``, ``c1`` ...) -> image path.
    report : Path or None
        ``cat_<name>.xml`` (CAT12) or ``<name>.json`` (vbmkit) report.
    roi : Path or None
        ``catROI_<name>.xml``.
    layout : str
        ``standard`` (mri/report/label folders), ``bids`` (flat ``anat`` folder) or ``flat``.
    """

    name: str
    maps: dict[str, Path] = field(default_factory=dict)
    report: Path | None = None
    roi: Path | None = None
    layout: str = "flat"


def split_kind(stem: str, kinds: Iterable[str]) -> tuple[str, str] | None:
    """Split ``s6mwp1sub-01_T1w`` into (``s6mwp1``, ``sub-01_T1w``); None for other names.

    The longest matching prefix wins (``mwp1`` before ``p1`` is not an issue since names do not
    start with ``mw``; ``s<fwhm>`` prefixes are recognised for every warped kind).
    """
    m = _SMOOTHED.match(stem)
    if m and len(stem) > m.end():
        return m.group(0), stem[m.end():]
    for kind in sorted(kinds, key=len, reverse=True):
        if stem.startswith(kind) and len(stem) > len(kind):
            return kind, stem[len(kind):]
    return None


def _layout(path: Path) -> str:
    parent = path.parent.name
    if parent in ("mri", "report", "label"):
        return "standard"
    if parent == "anat":
        return "bids"
    return "flat"


def find_outputs(root: str | os.PathLike, *, kinds: Iterable[str] = CAT12_KINDS,
                 report_json: bool = False) -> dict[str, SubjectOutputs]:
    """Find every subject's maps, report and ROI file under ``root`` (searched recursively).

    Parameters
    ----------
    root : path
        A CAT12 output folder (either layout), a vbmkit preprocess folder or an SPM12 folder.
    kinds : iterable of str
        Map prefixes to look for (default :data:`CAT12_KINDS`; smoothed ``s<fwhm>`` variants of
        the warped kinds are always recognised).
    report_json : bool
        Also take ``report/<name>.json`` (vbmkit's per-subject report) as the report.

    Returns
    -------
    dict
        Subject name -> :class:`SubjectOutputs`, sorted by name.

    Raises
    ------
    ImageError
        When ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise ImageError(f"{base}: expected an output folder (CAT12, SPM12 or vbmkit); it is not a folder")
    kinds = tuple(kinds)
    found: dict[str, SubjectOutputs] = {}

    def entry(name: str) -> SubjectOutputs:
        return found.setdefault(name, SubjectOutputs(name=name))

    for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if is_image_path(path):
            split = split_kind(image_stem(path), kinds)
            if split is None:
                continue
            sub = entry(split[1])
            sub.maps.setdefault(split[0], path)
            sub.layout = _layout(path)
        elif m := _REPORT_XML.match(path.name):
            entry(m.group("name")).report = path
        elif m := _ROI_XML.match(path.name):
            entry(m.group("name")).roi = path
        elif report_json and path.suffix == ".json" and path.parent.name == "report":
            entry(path.stem).report = path
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------------------------
# Generic CAT12 XML (cat_io_xml) reading and writing
# --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?(?:inf|nan|Inf|NaN)$")


def _parse_text(text: str) -> Any:
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        body = s[1:-1].replace(";", " ").replace(",", " ").split()
        if all(_NUMBER.match(v) for v in body):
            return [float(v) for v in body]
        return s
    if _NUMBER.match(s):
        return float(s)
    return s


def _element_to_value(el: ET.Element) -> Any:
    children = list(el)
    if not children:
        return _parse_text(el.text or "")
    if all(c.tag == "item" for c in children):  # a cell array
        return [_element_to_value(c) for c in children]
    out: dict[str, Any] = {}
    for c in children:
        value = _element_to_value(c)
        if c.tag in out:  # struct arrays repeat the tag
            prev = out[c.tag]
            out[c.tag] = (prev if isinstance(prev, list) and prev and isinstance(prev[0], dict)
                          else [prev]) + [value]
        else:
            out[c.tag] = value
    return out


def read_cat_xml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a CAT12 XML file into nested dicts (the root element, usually ``<S>``, is dropped).

    Numbers become floats, ``[a b c]`` vectors lists of floats, ``<item>`` children lists,
    anything else stays a string.

    Raises
    ------
    Cat12Error
        When the file is missing or is not well-formed XML.
    """
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as exc:
        raise Cat12Error(f"{p}: expected a CAT12 XML file; {type(exc).__name__}: {exc}") from exc
    value = _element_to_value(root)
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------
# cat_<name>.xml reports
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cat12Report:
    """What vbmkit uses from ``report/cat_<name>.xml``.

    Attributes
    ----------
    tiv_ml : float
        Total intracranial volume (``vol_TIV``), mL.
    csf_ml, gm_ml, wm_ml, wmh_ml : float
        ``vol_abs_CGW`` [CSF GM WM WMH], mL (WMH NaN when absent).
    rel_cgw : tuple of float
        ``vol_rel_CGW`` fractions of TIV (empty when absent).
    ratings : dict
        Quality marks 0.5 (best) .. 10.5 by name (:data:`RATINGS`), where present.
    version : str
        ``new`` (subjectmeasures / qualityratings) or ``old`` (QAS/SM, QAM/QM).
    """

    tiv_ml: float
    csf_ml: float
    gm_ml: float
    wm_ml: float
    wmh_ml: float
    rel_cgw: tuple[float, ...]
    ratings: dict[str, float]
    version: str

    @property
    def ratings_percent(self) -> dict[str, float]:
        """Ratings as percent: 105 - 10 * mark (CAT12's rating scale)."""
        return {k: mark_to_percent(v) for k, v in self.ratings.items()}


def mark_to_percent(mark: float) -> float:
    """CAT12 quality mark (0.5 best .. 10.5 worst) -> percent rating (100 % .. 0 %)."""
    return 105.0 - 10.0 * float(mark)


def _get(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for key in path.split("/"):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _vector(value: Any) -> list[float]:
    if value is None:
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, list):
        return [float(v) for v in value]
    return []


def read_cat12_report(path: str | os.PathLike) -> Cat12Report:
    """Read TIV, tissue volumes and quality ratings from a ``cat_<name>.xml`` report.

    Both field layouts are accepted: ``subjectmeasures/{vol_TIV, vol_abs_CGW, vol_rel_CGW}``
    with ``qualityratings/*`` (CAT12 r1000 and later) and ``QAS/SM/*`` with ``QAM/QM/*``
    (older; ``rms`` is the old name of IQR).

    Raises
    ------
    Cat12Error
        When the file is not XML or has neither ``subjectmeasures/vol_TIV`` nor ``QAS/SM/vol_TIV``.
    """
    tree = read_cat_xml(path)
    sm, version = _get(tree, "subjectmeasures"), "new"
    if not isinstance(sm, Mapping) or "vol_TIV" not in sm:
        sm, version = _get(tree, "QAS/SM"), "old"
    if not isinstance(sm, Mapping) or "vol_TIV" not in sm:
        raise Cat12Error(f"{path}: expected a CAT12 report with subjectmeasures/vol_TIV (or the older "
                         f"QAS/SM/vol_TIV); found top-level fields {sorted(tree)}")
    tiv = _vector(sm.get("vol_TIV"))
    cgw = _vector(sm.get("vol_abs_CGW"))
    cgw = cgw + [math.nan] * (4 - len(cgw)) if len(cgw) < 4 else cgw
    ratings: dict[str, float] = {}
    if version == "new":
        qr = _get(tree, "qualityratings") or {}
        names = {k: k for k in RATINGS}
    else:
        qr = _get(tree, "QAM/QM") or {}
        names = _OLD_RATINGS
    for key, field_name in names.items():
        v = _vector(qr.get(field_name)) if isinstance(qr, Mapping) else []
        if v:
            ratings[key] = v[0]
    return Cat12Report(tiv_ml=tiv[0] if tiv else math.nan, csf_ml=cgw[0], gm_ml=cgw[1], wm_ml=cgw[2],
                       wmh_ml=cgw[3], rel_cgw=tuple(_vector(sm.get("vol_rel_CGW"))),
                       ratings=ratings, version=version)


