"""Validate a study YAML completely, before any work, into a :class:`StudyPlan`.

Everything that can be checked without computing is checked here, and the first problem is
raised as one line ``study.yaml:LINE: key.path: what was expected; what came``: the schema
(unknown keys, types, ranges), duplicate keys, files and globs that match nothing, the
covariate table and its ID column, the formula and every contrast (against a design built
from the covariate table), the stratification column, the mask, the atlas, the device and the
output folder. Nothing is created on disk.

Conventions (documented in ``docs/study.md``):

- Relative paths in the YAML are relative to the YAML file's folder.
- ``out`` defaults to ``<yaml folder>/<name>_out``; ``vbmkit run --out`` overrides it.
- A formula may use ``TIV`` without a ``TIV`` column in the covariates: it is then taken from
  the preprocessing (``preprocess/volumes.csv``, column ``tiv_ml``) or from a ``volumes.csv``
  in a folder of ``inputs.maps``.
- ``inputs.t1`` without a ``preprocess`` section preprocesses with the defaults; QC and the
  report always run (with defaults when their sections are absent); ``glm``, ``roi`` and
  ``compare`` run only when present.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from vbmkit.config import GlmConfig, PreprocessConfig, QcConfig, ReportConfig, StudyConfig
from vbmkit.device import resolve_device
from vbmkit.errors import ConfigError, VbmkitError
from vbmkit.formula.design import (
    build_design,
    check_contrast_name,
    formula_variables,
    parse_contrast,
)
from vbmkit.io.atlas_catalog import catalog_entry, resolve_atlas_names
from vbmkit.io.bids import find_t1_inputs
from vbmkit.io.maps import find_maps
from vbmkit.io.ownership import check_claimable
from vbmkit.io.resources import atlas_paths
from vbmkit.io.study_yaml import KeyPath, StudyYaml, key_name, read_study_yaml
from vbmkit.io.tables import read_covariates
from vbmkit.workflows.preprocess.naming import map_kinds
from vbmkit.workflows.preprocess.subject import check_engine
from vbmkit.workflows.subjects import TIV, find_volume_tables


@dataclass(frozen=True, eq=False)
class StudyPlan:
    """A validated study: the config plus everything resolved from it.

    Attributes
    ----------
    yaml : StudyYaml
    config : StudyConfig
    out : Path
        Output folder (absolute; not created yet).
    t1 : list
        :class:`vbmkit.io.bids.T1Input` to preprocess (empty when only maps are given).
    maps : list of str
        ``inputs.maps`` entries as absolute paths / globs.
    covariates : pandas.DataFrame or None
    tiv_from : str or None
        ``"covariates"``, ``"preprocess"``, ``"maps"`` or None (formula without TIV).
    tiv_tables : list of Path
        ``volumes.csv`` files of ``inputs.maps`` folders (when ``tiv_from == "maps"``).
    device : str
        The resolved torch device name.
    """

    yaml: StudyYaml
    config: StudyConfig
    out: Path
    t1: list = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    covariates: pd.DataFrame | None = None
    tiv_from: str | None = None
    tiv_tables: list[Path] = field(default_factory=list)
    device: str = "cpu"

    @property
    def preprocess(self) -> PreprocessConfig | None:
        """Settings of the preprocess stage, or None when it does not run."""
        if not self.t1:
            return None
        return self.config.preprocess if self.config.preprocess is not None else PreprocessConfig()

    @property
    def qc(self) -> QcConfig:
        return self.config.qc if self.config.qc is not None else QcConfig()

    @property
    def report(self) -> ReportConfig:
        return self.config.report if self.config.report is not None else ReportConfig()

    @property
    def glm(self) -> GlmConfig | None:
        return self.config.glm

    def resolve(self, value: str | Path) -> Path:
        """A YAML path made absolute against the YAML file's folder."""
        return _resolve(self.yaml, value)

    @property
    def store(self) -> Path | None:
        """``glm.store`` made absolute (the subject x voxel store the GLM reads), or None."""
        glm = self.glm
        return self.resolve(glm.store) if glm is not None and glm.store is not None else None

    def map_sources(self) -> list[str]:
        """Where the maps are: ``inputs.maps``, else the preprocessing folder ``OUT/preprocess``."""
        return self.maps if self.maps else [str(self.out / "preprocess")]

    def find_maps(self, kind: str) -> list[Path]:
        """The ``kind`` maps (``mwp1``, ``s6mwp1``, ...) of the study's subjects."""
        return find_maps(self.map_sources(), kind=kind)

    def volumes_table(self) -> pd.DataFrame | None:
        """TIV and tissue volumes per subject (``volumes.csv`` of the preprocessing or of the maps)."""
        tables = [self.out / "preprocess" / "volumes.csv"] if self.preprocess is not None else self.tiv_tables
        if not tables and self.maps:
            tables = _volume_tables(self.maps)
        frames = [pd.read_csv(t) for t in tables if Path(t).is_file()]
        return pd.concat(frames, ignore_index=True) if frames else None


def _resolve(y: StudyYaml, value: str | Path) -> Path:
    p = Path(str(value)).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else y.path.parent / p))


def _one_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))  # formulaic colours its parser errors
    return " ".join(text.split())


def _fail(y: StudyYaml, loc: KeyPath, message: str) -> ConfigError:
    return ConfigError(f"{y.where(loc)}: {key_name(loc)}: {_one_line(message)}")


@contextmanager
def _at(y: StudyYaml, loc: KeyPath) -> Iterator[None]:
    """Re-raise a vbmkit error from a check as a one-line ConfigError naming ``loc``."""
    try:
        yield
    except VbmkitError as exc:
        raise _fail(y, loc, str(exc)) from None


def _schema_error(y: StudyYaml, exc: Any) -> ConfigError:
    seen: dict[tuple, str] = {}
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        # Union branches add type tags to the location ("str", "list[float]"): keep the key path.
        data_loc = loc
        while data_loc and data_loc not in y.lines and err.get("type") != "missing":
            data_loc = data_loc[:-1]
        if err.get("type") == "missing" or not data_loc:
            data_loc = loc
        msg = "unknown key (not part of the schema; check the spelling)" if err.get("type") == "extra_forbidden" \
            else str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if (err.get("type") not in ("missing", "value_error") and "input" in err
                and not isinstance(err["input"], (dict, list))):
            msg = f"{msg}; got {err['input']!r}"
        seen.setdefault(data_loc, msg)
    parts = [f"{y.where(loc)}: {key_name(loc)}: {_one_line(msg)}" for loc, msg in seen.items()]
    return ConfigError(parts[0] if len(parts) == 1 else f"{parts[0]} (and {len(parts) - 1} more: "
                       + "; ".join(p.split(': ', 1)[1] for p in parts[1:]) + ")")


def load_study(config_path: str | Path, *, out: str | Path | None = None,
               device: str | None = None) -> StudyPlan:
    """Read and validate a study YAML; raise :class:`ConfigError` on the first problem.

    Parameters
    ----------
    config_path : path
        The study YAML.
    out : path, optional
        Output folder overriding the YAML's ``out`` (relative to the current folder).
    device : str, optional
        ``auto``, ``cpu`` or ``cuda[:N]`` overriding the YAML's ``device`` and ``glm.device``
        (``vbmkit run --device``).

    Returns
    -------
    StudyPlan
        Nothing is written; the output folder is not created.
    """
    y = read_study_yaml(config_path)
    try:
        cfg = StudyConfig.model_validate(y.data)
    except ValidationError as exc:
        raise _schema_error(y, exc) from None
    if device is not None:  # the command line beats the YAML
        glm = cfg.glm.model_copy(update={"device": str(device)}) if cfg.glm is not None else None
        cfg = cfg.model_copy(update={"device": str(device), "glm": glm})

    with _at(y, ("device",)):
        device = str(resolve_device(cfg.device))
    if cfg.glm is not None and cfg.glm.device != "auto":
        with _at(y, ("glm", "device")):
            resolve_device(cfg.glm.device)

    out_dir = Path(out).expanduser().resolve() if out is not None else (
        _resolve(y, cfg.out) if cfg.out is not None else y.path.parent / f"{cfg.name}_out")
    if out_dir.exists() and not out_dir.is_dir():
        raise _fail(y, ("out",), f"expected a folder for the outputs; {out_dir} is a file")
    with _at(y, ("out",)):
        check_claimable(out_dir, command="run")

    t1, maps = _check_inputs(y, cfg)
    covariates = _check_covariates(y, cfg)
    tiv_from, tiv_tables = _check_glm(y, cfg, covariates, t1=bool(t1), maps=maps)
    _check_roi_compare(y, cfg, has_maps=bool(t1 or maps))
    return StudyPlan(yaml=y, config=cfg, out=out_dir, t1=t1, maps=maps, covariates=covariates,
                     tiv_from=tiv_from, tiv_tables=tiv_tables, device=device)


def _check_inputs(y: StudyYaml, cfg: StudyConfig) -> tuple[list, list[str]]:
    inputs = cfg.inputs
    if not inputs.t1 and not inputs.maps:
        raise _fail(y, ("inputs",), "expected 't1' (images to preprocess) or 'maps' (preprocessed maps); "
                    "got neither")
    if cfg.preprocess is not None and not inputs.t1:
        raise _fail(y, ("preprocess",), "expected inputs.t1 images to preprocess; inputs.t1 is empty")
    t1_entries = [str(_resolve(y, e)) for e in inputs.t1]
    for i, entry in enumerate(t1_entries):
        with _at(y, ("inputs", "t1", i)):
            find_t1_inputs([entry])
    with _at(y, ("inputs", "t1")):
        t1 = find_t1_inputs(t1_entries) if t1_entries else []
    if t1 and cfg.preprocess is not None:
        with _at(y, ("preprocess", "engine")):
            check_engine(cfg.preprocess)
    maps = [str(_resolve(y, e)) for e in inputs.maps]
    kind = cfg.glm.maps if cfg.glm is not None else "mwp1"
    for i, entry in enumerate(maps):
        with _at(y, ("inputs", "maps", i)):
            find_maps([entry], kind=kind)
    return t1, maps


def _check_covariates(y: StudyYaml, cfg: StudyConfig) -> pd.DataFrame | None:
    inputs = cfg.inputs
    if inputs.covariates is None:
        if cfg.glm is not None:
            raise _fail(y, ("inputs", "covariates"), "expected a covariate table (CSV/TSV) for the glm "
                        "section; none is given")
        return None
    path = _resolve(y, inputs.covariates)
    if not path.is_file():
        raise _fail(y, ("inputs", "covariates"), f"expected a CSV or TSV file; {path} does not exist")
    loc = ("inputs", "id_column") if ("inputs", "id_column") in y.lines else ("inputs", "covariates")
    try:
        return read_covariates(path, id_column=inputs.id_column)
    except VbmkitError as exc:
        at = loc if f"ID column {inputs.id_column!r}" in str(exc) else ("inputs", "covariates")
        raise _fail(y, at, str(exc)) from None


def _check_glm(y: StudyYaml, cfg: StudyConfig, covariates: pd.DataFrame | None, *, t1: bool,
               maps: list[str]) -> tuple[str | None, list[Path]]:
    glm = cfg.glm
    if glm is None or covariates is None:
        return None, []
    if t1 and not maps:
        settings = cfg.preprocess if cfg.preprocess is not None else PreprocessConfig()
        kinds = map_kinds(settings)
        if glm.maps not in kinds:
            raise _fail(y, ("glm", "maps"), f"expected a map the preprocessing writes ({', '.join(kinds)}); "
                        f"got {glm.maps!r} (add its FWHM to preprocess.fwhm)")
    with _at(y, ("glm", "formula")):
        variables = formula_variables(glm.formula)
    tiv_from, tiv_tables = None, []
    table = covariates
    if TIV in variables:
        if TIV in covariates.columns:
            tiv_from = "covariates"
        else:
            tiv_tables = _volume_tables(maps)
            if t1 and not maps:
                tiv_from = "preprocess"
            elif tiv_tables:
                tiv_from = "maps"
            else:
                raise _fail(y, ("glm", "formula"), "uses TIV, which is neither a covariate column nor "
                            "available from preprocessing (no inputs.t1) or a volumes.csv in inputs.maps")
            # A stand-in TIV column so that the design and the contrasts can be checked now.
            table = covariates.copy()
            table[TIV] = np.random.default_rng(0).normal(1500.0, 150.0, len(table))
    absent = [v for v in variables if v not in table.columns]
    if absent:
        raise _fail(y, ("glm", "formula"), f"uses {absent}, which are not columns of the covariate table "
                    f"{cfg.inputs.covariates} (columns: {list(map(str, covariates.columns))})")
    if glm.stratify is not None and glm.stratify not in covariates.columns:
        raise _fail(y, ("glm", "stratify"), f"expected a column of the covariate table; got {glm.stratify!r} "
                    f"(columns: {list(map(str, covariates.columns))})")
    if glm.mask is not None and not _resolve(y, glm.mask).is_file():
        raise _fail(y, ("glm", "mask"), f"expected an image file; {_resolve(y, glm.mask)} does not exist")
    if glm.store is not None:
        if glm.permutations > 0:
            raise _fail(y, ("glm", "permutations"), "permutations need whole maps in memory and are not run "
                        f"from glm.store; got {glm.permutations} (set 0, or remove glm.store)")
        if not t1 and not _resolve(y, glm.store).is_dir():  # without preprocessing the store must exist
            raise _fail(y, ("glm", "store"), f"expected a store folder (vbmkit stack); {_resolve(y, glm.store)} "
                        "does not exist (or add inputs.t1 and a preprocess section to grow it)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _at(y, ("glm", "formula")):
            design = build_design(table, glm.formula, standardize=glm.standardize,
                                  id_column=cfg.inputs.id_column, missing="drop")
        seen: dict[str, str] = {}
        for name, expr in glm.contrasts.items():
            loc = ("glm", "contrasts", name)
            if str(name).lower() in seen:
                raise _fail(y, loc, f"expected distinct contrast names (they name folders); "
                            f"{seen[str(name).lower()]!r} and {name!r} differ only in case")
            seen[str(name).lower()] = str(name)
            with _at(y, loc):
                check_contrast_name(str(name))
                parse_contrast(str(name), expr, design)
    return tiv_from, tiv_tables


def _volume_tables(maps: list[str]) -> list[Path]:
    """``volumes.csv`` in each ``inputs.maps`` folder or its parent (the preprocessing folder)."""
    return find_volume_tables(maps, levels=1)


def _check_roi_compare(y: StudyYaml, cfg: StudyConfig, *, has_maps: bool) -> None:
    if cfg.roi is not None:
        if cfg.roi.native and cfg.preprocess is not None and not cfg.preprocess.save_deformation:
            raise _fail(y, ("roi", "native"), "native-space ROI volumes need the deformation fields: set "
                        "preprocess.save_deformation: true (or roi.native: false for template-space volumes "
                        "of the modulated maps, which are native-equivalent mL)")
        if not has_maps:
            raise _fail(y, ("roi",), "expected maps to measure (inputs.t1 or inputs.maps)")

        with _at(y, ("roi", "atlas")):
            for name in roi_atlases(cfg.roi.atlas, lambda p: _resolve(y, p)):
                if catalog_entry(name) is None:
                    atlas_paths(name)
    if cfg.compare is not None:
        for key in ("cat12", "spm", "ours"):
            value = getattr(cfg.compare, key)
            if value is not None and not _resolve(y, value).is_dir():
                raise _fail(y, ("compare", key), f"expected a folder; {_resolve(y, value)} does not exist")


def roi_atlases(spec: str, resolve: Callable[[str], Path]) -> list[str]:
    """The atlases of ``roi.atlas``: catalog names as they are, label NIfTI paths through ``resolve``.

    ``cat12``, ``all`` and comma-separated lists are expanded
    (:func:`vbmkit.io.atlas_catalog.resolve_atlas_names`).
    """
    return [str(resolve(n)) if n.lower().endswith((".nii", ".nii.gz")) else n for n in resolve_atlas_names(spec)]
