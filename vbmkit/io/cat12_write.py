"""Writing CAT12's XML files: ``report/cat_<name>.xml`` and ``label/catROI_<name>.xml``.

The layouts are those :mod:`vbmkit.io.cat12` and :mod:`vbmkit.io.catroi` read (DESIGN.md, "CAT12
conventions"), so a lab's CAT12 scripts (TIV extraction, ROI exports) read vbmkit's results:

- ``cat_<name>.xml`` (``cat_io_xml``, root ``<S>``): ``filedata/{path,file,fname}``,
  ``subjectmeasures/{vol_TIV, vol_abs_CGW, vol_rel_CGW}`` (``vol_abs_CGW`` = [CSF GM WM WMH] in
  mL; ``vol_rel_CGW`` the same divided by TIV), ``qualityratings/{NCR, ICR, res_RMS, IQR}``
  (CAT12 marks: 0.5 best .. 10.5 worst) and ``software``; older releases' ``QAS/SM`` and
  ``QAM/QM`` layout on request (``version="old"``, for tests of the readers);
- ``catROI_<name>.xml``: ``<S><atlas><ids>[..]</ids><names><item>..</item>...</names>
  <data><Vgm>[..]</Vgm><Vwm>[..]</Vwm><Vcsf>[..]</Vcsf></data></atlas>...</S>``, one element per
  atlas, volumes in mL.

Report numbers are written with 15 significant digits (MATLAB ``mat2str(x, 15)``: they read back
to about 1e-15 relative), ROI volumes as the shortest text that reads back to the same float64. Every file is written atomically (:func:`vbmkit.io.atomic.write_text`).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vbmkit.errors import RoiTableError
from vbmkit.io.atomic import write_text
from vbmkit.io.cat12 import _OLD_RATINGS, Cat12Error
from vbmkit.io.catroi import TISSUE_TO_CAT12

#: Element paths of ``cat_<name>.xml`` that vbmkit writes (DESIGN.md), below the root ``<S>``.
REPORT_PATHS = ("filedata/path", "filedata/file", "filedata/fname", "subjectmeasures/vol_TIV",
                "subjectmeasures/vol_abs_CGW", "subjectmeasures/vol_rel_CGW")
#: Element paths of one atlas ``<A>`` in ``catROI_<name>.xml``, below the root ``<S>``.
ROI_PATHS = ("{atlas}/ids", "{atlas}/names/item", "{atlas}/data/Vgm", "{atlas}/data/Vwm", "{atlas}/data/Vcsf")


def _format_number(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 1e15):
        return str(int(v))
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Inf" if v > 0 else "-Inf")
    return f"{v:.15g}"  # as MATLAB mat2str(x, 15): round-trips to ~1e-15 relative


def _value_to_element(tag: str, value: Any) -> ET.Element:
    el = ET.Element(tag)
    if isinstance(value, Mapping):
        for k, v in value.items():
            el.append(_value_to_element(str(k), v))
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        for v in value:
            el.append(_value_to_element("item", v))
    elif isinstance(value, (list, tuple, np.ndarray)):
        el.text = "[" + " ".join(_format_number(float(v)) for v in value) + "]"
    elif isinstance(value, (int, float, np.floating, np.integer)):
        el.text = _format_number(value.item() if hasattr(value, "item") else value)
    elif value is None:
        el.text = "[]"
    else:
        el.text = str(value)
    return el


def format_cat_xml(struct: Mapping[str, Any], *, root: str = "S") -> str:
    """Serialise nested dicts as ``cat_io_xml`` does: root ``<S>``, numbers as text, vectors in
    brackets, lists of strings as ``<item>`` children."""
    el = _value_to_element(root, struct)
    ET.indent(el, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(el, encoding="unicode") + "\n"


def write_cat_xml(path: str | os.PathLike, struct: Mapping[str, Any], *, root: str = "S") -> Path:
    """Write nested dicts as a CAT12 XML file (atomically)."""
    return write_text(path, format_cat_xml(struct, root=root))


def write_cat12_report(path: str | os.PathLike, *, name: str, tiv_ml: float,
                       vol_abs_cgw: Iterable[float], vol_rel_cgw: Iterable[float] | None = None,
                       ratings: Mapping[str, float] | None = None, version: str = "new",
                       source: str | None = None, software: Mapping[str, str] | None = None,
                       measures: Mapping[str, Any] | None = None) -> Path:
    """Write a ``cat_<name>.xml`` report in CAT12's layout.

    Parameters
    ----------
    path : path
        Target file (``<subject>/report/cat_<name>.xml``).
    name : str
        Subject name, stored under ``filedata/file``.
    tiv_ml : float
        TIV in mL (``subjectmeasures/vol_TIV``).
    vol_abs_cgw : iterable of float
        [CSF GM WM WMH] in mL (CAT12 12.7+ appends a 5th, zero, entry; any length is kept).
    vol_rel_cgw : iterable of float, optional
        Fractions of TIV; ``vol_abs_cgw / tiv_ml`` when omitted.
    ratings : mapping, optional
        Quality marks by name (``NCR``, ``ICR``, ``res_RMS``, ``IQR``, ``SIQR``; 0.5 best ..
        10.5 worst).
    version : {"new", "old"}
        Field layout of CAT12 r1000+ or of older releases (``QAS/SM``, ``QAM/QM``).
    source : str, optional
        The input image (``filedata/fname``; default ``<name>.nii``).
    measures : mapping, optional
        Raw quality measures written under ``qualitymeasures`` (e.g. ``NCR``, ``ICR`` ratios,
        ``res_RMS`` in mm, ``res_vx_vol`` [mm mm mm]).
    software : mapping, optional
        Written under ``software`` (default CAT12's ``version_cat``/``revision_cat`` of 12.8.2,
        as the reader tests expect of a CAT12 file).

    Raises
    ------
    Cat12Error
        For an unknown ``version`` or a TIV that is not a positive number.
    """
    if version not in ("new", "old"):
        raise Cat12Error(f"write_cat12_report version: expected 'new' or 'old'; got {version!r}")
    if not (isinstance(tiv_ml, (int, float, np.floating)) and math.isfinite(float(tiv_ml)) and tiv_ml > 0):
        raise Cat12Error(f"write_cat12_report tiv_ml: expected a positive number of mL; got {tiv_ml!r}")
    cgw = [float(v) for v in vol_abs_cgw]
    rel = [float(v) for v in vol_rel_cgw] if vol_rel_cgw is not None else [v / float(tiv_ml) for v in cgw]
    measures = {"vol_TIV": float(tiv_ml), "vol_abs_CGW": cgw, "vol_rel_CGW": rel}
    marks = {k: float(v) for k, v in (ratings or {}).items()}
    fname = source if source is not None else f"{name}.nii"
    filedata = {"path": str(Path(fname).parent) if source is not None else str(Path(path).parent),
                "file": name, "fname": fname}
    if version == "new":
        struct: dict[str, Any] = {
            "filedata": filedata,
            **({"qualitymeasures": dict(measures)} if measures else {}),
            "qualityratings": marks,
            "subjectmeasures": measures,
            "software": dict(software) if software is not None else {"version_cat": "CAT12.8.2",
                                                                    "revision_cat": "2170"},
        }
    else:
        struct = {"QAS": {"FD": filedata, "SM": measures},
                  "QAM": {"QM": {_OLD_RATINGS.get(k, k): v for k, v in marks.items()}}}
    return write_cat_xml(path, struct)


def _fmt(values) -> str:
    """Shortest repr that reads back to the same float64 (volumes round-trip exactly)."""
    return "[" + ";".join(repr(float(v)) if np.isfinite(v) else "NaN" for v in values) + "]"


def write_catroi_xml(path: str | os.PathLike, long: pd.DataFrame, *,
                     element_names: Mapping[str, str] | None = None) -> Path:
    """Write one subject's volumes as CAT12 ``catROI_<name>.xml`` (atomically).

    Parameters
    ----------
    path : path
        Target file (``<subject>/label/catROI_<name>.xml``).
    long : pandas.DataFrame
        Long-table rows (:data:`vbmkit.io.catroi.LONG_COLUMNS`) of ONE subject, any atlases;
        tissues ``gm``/``wm``/``csf`` are written as ``Vgm``/``Vwm``/``Vcsf`` (mL), ids in
        first-seen order, names from ``region`` (CAT12's ROIabbr, or ROIname where an atlas has
        no abbreviations).
    element_names : mapping, optional
        Atlas name -> XML element name (CAT12's atlas file stem, e.g. ``schaefer100`` ->
        ``Schaefer2018_100Parcels_17Networks_order``); default the atlas name.

    Raises
    ------
    RoiTableError
        When ``long`` holds several subjects or an atlas name is not a valid XML element name.
    """
    if long["subject"].nunique() > 1:
        raise RoiTableError(f"write_catroi_xml {path}: expected rows of one subject; got "
                            f"{sorted(long['subject'].unique())[:5]}")
    root = ET.Element("S")
    for atlas, rows in long.groupby("atlas", sort=False):
        tag = (element_names or {}).get(str(atlas), str(atlas))
        if not tag or not (tag[0].isalpha() or tag[0] == "_") or any(c in tag for c in " <>&/\"'"):
            raise RoiTableError(f"write_catroi_xml {path}: atlas {atlas!r}: expected a name usable as an "
                                f"XML element (letters, digits, '_', '-', '.'); got {tag!r}")
        a = ET.SubElement(root, tag)
        regions = rows.drop_duplicates("region_id")[["region_id", "region"]]
        ET.SubElement(a, "ids").text = "[" + ";".join(str(int(i)) for i in regions["region_id"]) + "]"
        names = ET.SubElement(a, "names")
        for name in regions["region"]:
            ET.SubElement(names, "item").text = str(name)
        data = ET.SubElement(a, "data")
        for tissue, measure in TISSUE_TO_CAT12.items():
            sub = rows[rows["tissue"] == tissue].set_index("region_id")["volume_ml"]
            if len(sub):
                ET.SubElement(data, measure).text = _fmt(sub.reindex(regions["region_id"]).to_numpy())
    ET.indent(root)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    return write_text(path, text)
