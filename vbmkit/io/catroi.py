"""ROI volume tables of CAT12 and deepmriprep, read into (and written from) one long table.

The long table has one row per subject, atlas, region and tissue::

    subject, atlas, region_id, region, hemisphere, tissue, volume_ml

``tissue`` is ``gm``, ``wm``, ``csf`` or ``region`` (the region's own volume); ``region`` is the
atlas abbreviation (CAT12's ``ROIabbr``, e.g. ``lSupFroG``); volumes are in mL.

Formats
-------
CAT12 subject file ``label/catROI_<name>.xml``::

    <S><lpba40><ids>[21;22;...]</ids><names><item>lSupFroG</item>...</names>
       <data><Vgm>[..]</Vgm><Vwm>[..]</Vwm><Vcsf>[..]</Vcsf></data></lpba40>...</S>

(one element per atlas; numbers as MATLAB-style lists separated by ``;``, ``,`` or blanks;
``Vcsf`` and other measures optional; the atlas element may sit deeper in older versions).
``catROIs_<name>.xml`` holds surface measures (thickness per region), not volumes.
CAT12 group export ``<name>_catROI_<atlas>_<measure>.csv``: header ``names,<abbr>,...``, one row
per subject. deepmriprep ``<atlas>_volumes<name>.csv``: ``ROIid, ROIname, gmv_mm3, wmv_mm3,
csfv_mm3, region_mm3`` in mm^3.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from vbmkit.errors import ResourceError, RoiTableError
from vbmkit.io.atlas import hemisphere_of, load_atlas
from vbmkit.io.atomic import atomic_path

LONG_COLUMNS = ["subject", "atlas", "region_id", "region", "hemisphere", "tissue", "volume_ml"]
CAT12_MEASURES = {"Vgm": "gm", "Vwm": "wm", "Vcsf": "csf"}
TISSUE_TO_CAT12 = {v: k for k, v in CAT12_MEASURES.items()}
DEEPMRIPREP_COLUMNS = {"gmv_mm3": "gm", "wmv_mm3": "wm", "csfv_mm3": "csf", "region_mm3": "region"}


def _numbers(text: str | None, path: Path, what: str) -> np.ndarray:
    parts = [p for p in re.split(r"[\s;,\[\]]+", text or "") if p]
    try:
        return np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError as exc:
        raise RoiTableError(f"{path}: <{what}> expected a list of numbers; got {text!r:.80}") from exc


def _names(elem: ET.Element, path: Path) -> list[str]:
    items = [(i.text or "").strip() for i in elem.findall("item")]
    if items:
        return items
    text = (elem.text or "").strip().strip("[]{}")
    return [p.strip().strip("'\"") for p in re.split(r"[;,\n]+", text) if p.strip()]


def _subject_from(path: Path, prefix: str) -> str:
    stem = path.name[: -len(".xml")] if path.name.endswith(".xml") else path.stem
    return stem[len(prefix):] if stem.startswith(prefix) else stem


def read_catroi_xml(path: str | os.PathLike, *, subject: str | None = None) -> pd.DataFrame:
    """Read CAT12's ``label/catROI_<name>.xml`` into the long table.

    Parameters
    ----------
    path : path
        The XML file.
    subject : str, optional
        Subject label (default: ``<name>`` from the file name).

    Returns
    -------
    pandas.DataFrame
        :data:`LONG_COLUMNS`; one row per atlas x region x volume measure (``Vgm``, ``Vwm``,
        ``Vcsf`` -> ``gm``, ``wm``, ``csf``; other measures are skipped).

    Raises
    ------
    RoiTableError
        For a surface file (``catROIs_``), unparsable XML, no atlas element, or lists of
        different lengths.
    """
    path = Path(path)
    if path.name.startswith("catROIs_"):
        raise RoiTableError(f"{path}: this is a CAT12 surface ROI file (catROIs_: cortical "
                            "thickness etc. per region), not volumes; use label/catROI_<name>.xml")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise RoiTableError(f"{path}: expected CAT12 catROI XML; could not parse it ({exc})") from exc
    subject = subject if subject is not None else _subject_from(path, "catROI_")
    frames = []
    for elem in root.iter():
        ids_el, names_el, data_el = elem.find("ids"), elem.find("names"), elem.find("data")
        if ids_el is None or names_el is None or data_el is None:
            continue
        atlas = elem.tag
        ids = _numbers(ids_el.text, path, f"{atlas}/ids").astype(np.int64)
        names = _names(names_el, path)
        if len(names) != len(ids):
            raise RoiTableError(f"{path}: <{atlas}> expected as many names as ids; got "
                                f"{len(names)} names and {len(ids)} ids")
        for measure in data_el:
            tissue = CAT12_MEASURES.get(measure.tag)
            if tissue is None:
                continue  # thickness, intensities and other non-volume measures
            values = _numbers(measure.text, path, f"{atlas}/data/{measure.tag}")
            if len(values) != len(ids):
                raise RoiTableError(f"{path}: <{atlas}/data/{measure.tag}> expected {len(ids)} "
                                    f"values like <ids>; got {len(values)}")
            frames.append(pd.DataFrame({
                "subject": subject, "atlas": atlas, "region_id": ids, "region": names,
                "hemisphere": [hemisphere_of(n, n) for n in names], "tissue": tissue,
                "volume_ml": values}))
    if not frames:
        raise RoiTableError(f"{path}: expected an atlas element with <ids>, <names> and <data> "
                            "holding Vgm/Vwm/Vcsf; found none")
    return pd.concat(frames, ignore_index=True)[LONG_COLUMNS]


_GROUP_RE = re.compile(r"^(?P<name>.*?)_?catROI_(?P<atlas>[^_]+)_(?P<measure>V\w+)\.csv$")


def _region_lookup(atlas: str) -> dict[str, int]:
    try:
        table = load_atlas(atlas).table
    except ResourceError:
        return {}
    return dict(zip(table["abbr"], table["region_id"], strict=True))


def read_cat12_group_csv(path: str | os.PathLike, *, atlas: str | None = None,
                         tissue: str | None = None) -> pd.DataFrame:
    """Read CAT12's group ROI export ``<name>_catROI_<atlas>_<measure>.csv`` into the long table.

    Atlas and measure come from the file name unless given; region ids from the atlas's label
    table when vbmkit knows the atlas (else -1).
    """
    path = Path(path)
    m = _GROUP_RE.match(path.name)
    atlas = atlas if atlas is not None else (m.group("atlas") if m else None)
    measure = m.group("measure") if m else None
    tissue = tissue if tissue is not None else CAT12_MEASURES.get(measure or "")
    if atlas is None or tissue is None:
        raise RoiTableError(f"{path}: expected a name like <name>_catROI_<atlas>_Vgm.csv (or pass "
                            "atlas= and tissue=); could not tell the atlas and volume measure")
    wide = pd.read_csv(path, sep=None, engine="python")
    if wide.columns[0] != "names":
        raise RoiTableError(f"{path}: expected the header to start with 'names'; got {wide.columns[0]!r}")
    ids = _region_lookup(atlas)
    long = wide.melt(id_vars="names", var_name="region", value_name="volume_ml")
    long = long.rename(columns={"names": "subject"})
    long["subject"] = long["subject"].astype(str)
    long["atlas"] = atlas
    long["region_id"] = long["region"].map(lambda r: ids.get(r, -1)).astype(np.int64)
    long["hemisphere"] = long["region"].map(lambda r: hemisphere_of(r, r))
    long["tissue"] = tissue
    long["volume_ml"] = long["volume_ml"].astype(np.float64)
    return long[LONG_COLUMNS]


def write_cat12_group_csv(path: str | os.PathLike, long: pd.DataFrame, *, tissue: str = "gm") -> Path:
    """Write CAT12's group export (header ``names,<abbr>...``, one row per subject) atomically.

    ``long`` holds one atlas; regions keep their first-seen order (region id order for vbmkit's
    tables); rows follow the order subjects first appear.
    """
    rows = long[long["tissue"] == tissue]
    if rows["atlas"].nunique() > 1:
        raise RoiTableError(f"write_cat12_group_csv {path}: expected one atlas; got "
                            f"{sorted(rows['atlas'].unique())}")
    wide = rows.pivot(index="subject", columns="region", values="volume_ml")
    wide = wide.reindex(index=pd.unique(rows["subject"]), columns=pd.unique(rows["region"]))
    wide.index.name = "names"
    with atomic_path(path) as tmp:
        wide.to_csv(tmp, float_format="%.10g")
    return Path(path)


def read_deepmriprep_volumes(path: str | os.PathLike, *, subject: str | None = None,
                             atlas: str | None = None) -> pd.DataFrame:
    """Read deepmriprep's ``<atlas>_volumes`` CSV (mm^3) into the long table (mL).

    File names deepmriprep writes: ``<atlas>_volumes<name>.csv`` (dir formats sub/cat/flat),
    ``<atlas>_volumes/<name>.csv`` (mod) and ``<name>_<atlas>_volumes.csv`` (BIDS); subject and
    atlas are taken from them unless given. Region abbreviations come from the atlas's label
    table when vbmkit knows the atlas (else the ROIname).
    """
    path = Path(path)
    stem = path.name[:-4] if path.name.endswith(".csv") else path.name
    guesses = [re.match(r"^(?P<atlas>.+?)_volumes(?P<name>.+)$", stem),
               re.match(r"^(?P<name>[^_]+)_(?P<atlas>.+)_volumes$", stem)]
    m = next((g for g in guesses if g), None)
    if m is None and path.parent.name.endswith("_volumes"):
        atlas = atlas if atlas is not None else path.parent.name[: -len("_volumes")]
        subject = subject if subject is not None else stem
    atlas = atlas if atlas is not None else (m.group("atlas") if m else None)
    subject = subject if subject is not None else (m.group("name") if m else stem)
    if atlas is None:
        raise RoiTableError(f"{path}: expected a name like <atlas>_volumes<name>.csv (or pass atlas=)")
    table = pd.read_csv(path)
    table = table.loc[:, [c for c in table.columns if not str(c).startswith("Unnamed")]]
    missing = [c for c in ("ROIid", "ROIname", *DEEPMRIPREP_COLUMNS) if c not in table.columns]
    if missing:
        raise RoiTableError(f"{path}: expected deepmriprep columns ROIid, ROIname, gmv_mm3, wmv_mm3, "
                            f"csfv_mm3, region_mm3; missing {missing}")
    lookup = {v: k for k, v in _region_lookup(atlas).items()}
    frames = []
    for col, tissue in DEEPMRIPREP_COLUMNS.items():
        regions = [lookup.get(int(i), str(n).strip()) for i, n in zip(table["ROIid"], table["ROIname"], strict=True)]
        frames.append(pd.DataFrame({
            "subject": subject, "atlas": atlas, "region_id": table["ROIid"].astype(np.int64),
            "region": regions,
            "hemisphere": [hemisphere_of(r, str(n)) for r, n in zip(regions, table["ROIname"], strict=True)],
            "tissue": tissue, "volume_ml": table[col].astype(np.float64) / 1000.0}))
    return pd.concat(frames, ignore_index=True)[LONG_COLUMNS]


def subject_tiv_ml(map_path: str | os.PathLike, name: str) -> float | None:
    """TIV in mL recorded by the pipeline that wrote a subject's map, or None.

    Looks beside ``<subject>/mri/<map>`` for vbmkit's ``report/<name>.json``
    (``volumes_ml.tiv``) and CAT12's ``report/cat_<name>.xml`` (``subjectmeasures/vol_TIV``;
    older versions ``QAS/SM/vol_TIV``).
    """
    folder = Path(map_path).parent
    base = folder.parent if folder.name == "mri" else folder
    report = base / "report"
    js = report / f"{name}.json"
    if js.is_file():
        try:
            tiv = json.loads(js.read_text(encoding="utf-8")).get("volumes_ml", {}).get("tiv")
            return float(tiv) if tiv is not None else None
        except (OSError, ValueError, AttributeError):
            return None
    xml = report / f"cat_{name}.xml"
    if xml.is_file():
        try:
            root = ET.parse(xml).getroot()
        except (ET.ParseError, OSError):
            return None
        for where in ("subjectmeasures/vol_TIV", "QAS/SM/vol_TIV", ".//vol_TIV"):
            el = root.find(where)
            if el is not None and el.text:
                values = _numbers(el.text, xml, "vol_TIV")
                return float(values[0]) if len(values) else None
    return None
