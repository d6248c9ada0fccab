"""``vbmkit init FOLDER``: a commented study YAML that fits what the folder holds.

Detects BIDS T1 images (``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``) or plain NIfTI files, and a
covariate table (``participants.tsv``, else one CSV/TSV); proposes a formula and contrasts from
columns named like age, sex/gender and group/diagnosis; writes every section with the field
descriptions of :mod:`vbmkit.config` as comments.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from vbmkit.config import (
    GlmConfig,
    InputsConfig,
    PreprocessConfig,
    QcConfig,
    ReportConfig,
    RoiConfig,
)
from vbmkit.errors import ConfigError
from vbmkit.io.atomic import write_text
from vbmkit.io.bids import bids_t1_files, is_bids_folder
from vbmkit.io.nifti import is_image_path
from vbmkit.io.tables import read_covariates

AGE_NAMES = ("age", "age_years", "age_at_scan")
SEX_NAMES = ("sex", "gender")
GROUP_NAMES = ("group", "diagnosis", "dx", "condition")


def _comment(model, name: str) -> str:
    desc = model.model_fields[name].description or ""
    return f"  # {desc}" if desc else ""


def _find_table(folder: Path) -> Path | None:
    if (folder / "participants.tsv").is_file():
        return folder / "participants.tsv"
    tables = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".tsv") and p.is_file())
    return tables[0] if len(tables) == 1 else None


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _level_contrast(table: pd.DataFrame, column: str) -> tuple[str, str] | None:
    levels = sorted(str(v) for v in table[column].dropna().unique())
    if len(levels) < 2:
        return None
    # Treatment coding against the first level in sorted order (vbmkit.formula.design).
    return levels[-1], f"C({column})[T.{levels[-1]}]" if len(levels) == 2 else f"C({column})"


def study_yaml_for(folder: str | os.PathLike, *, yaml_folder: str | os.PathLike | None = None) -> str:
    """The text of a commented study YAML for ``folder``.

    Paths in the YAML are written relative to ``yaml_folder`` (where the YAML will live;
    default ``folder`` itself), because vbmkit resolves them against the YAML's folder.

    Raises
    ------
    ConfigError
        When ``folder`` is not a folder or holds no T1 image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"FOLDER {root}: expected a folder of T1 images or a BIDS dataset; it is not a folder")
    bids = is_bids_folder(root)
    if bids:
        n_t1 = len(bids_t1_files(root))
        t1_entry, note = ".", f"BIDS dataset: {n_t1} T1w images (sub-*/[ses-*/]anat/*_T1w.nii[.gz])"
    else:
        files = sorted(p for p in root.iterdir() if p.is_file() and is_image_path(p))
        n_t1 = len(files)
        gz = sum(p.name.endswith(".gz") for p in files) >= n_t1 / 2
        t1_entry, note = ("*.nii.gz" if gz else "*.nii"), f"{n_t1} NIfTI images in the folder"
    if n_t1 == 0:
        raise ConfigError(f"FOLDER {root}: expected T1 images (BIDS sub-*/anat/*_T1w.nii[.gz] or *.nii[.gz]); "
                          "found none")

    rel = Path(os.path.relpath(root.resolve(), Path(yaml_folder if yaml_folder is not None else root).resolve()))

    def here(name: str) -> str:
        return (rel / name).as_posix() if str(rel) != "." else name

    t1_entry = here(t1_entry)
    table_path = _find_table(root)
    table, id_column = None, "participant_id"
    if table_path is not None:
        try:
            head = pd.read_csv(table_path, sep="\t" if table_path.suffix == ".tsv" else ",", nrows=0)
            id_column = next((c for c in head.columns if c.lower() in ("participant_id", "subject", "id")),
                             str(head.columns[0]))
            table = read_covariates(table_path, id_column=id_column)
        except Exception:  # an unreadable table: write the YAML without a GLM
            table = None
    lines = [f"# vbmkit study for {_comment_text(str(root.resolve()))}", f"# Found: {_comment_text(note)}.",
             "# Relative paths are relative to this file's folder. Check: vbmkit run --check study.yaml",
             "schema_version: 1", f"name: {_plain_name(root.resolve().name)}",
             f"out: {'derivatives/vbmkit' if bids and str(rel) == '.' else 'vbmkit_out'}  # output folder",
             "device: auto  # 'auto' (CUDA when present), 'cpu' or 'cuda'", "", "inputs:",
             f"  t1: [{_quote(t1_entry)}]{_comment_inputs('t1')}"]
    if table is not None:
        lines += [f"  covariates: {_quote(here(table_path.name))}{_comment_inputs('covariates')}",
                  f"  id_column: {_quote(id_column)}{_comment_inputs('id_column')}",
                  f"  missing: drop{_comment_inputs('missing')}"]
    lines += ["", "preprocess:", f"  engine: classic{_comment(PreprocessConfig, 'engine')}",
              f"  fwhm: [6]{_comment(PreprocessConfig, 'fwhm')}", f"  jobs: 1{_comment(PreprocessConfig, 'jobs')}",
              "", "qc:", f"  sd_threshold: 2.0{_comment(QcConfig, 'sd_threshold')}",
              f"  exclude_flagged: false{_comment(QcConfig, 'exclude_flagged')}"]
    lines += _glm_lines(table)
    lines += ["", "roi:", f"  atlas: lpba40{_comment(RoiConfig, 'atlas')}",
              "", "report:", f"  title: {_quote(root.resolve().name + ' VBM study')}{_comment(ReportConfig, 'title')}",
              "", "# compare:  # agreement with a CAT12 run of the same subjects",
              "#   cat12: path/to/cat12_output"]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A YAML double-quoted scalar for any text (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _comment_text(text: str) -> str:
    """Text safe inside a YAML comment (one line)."""
    return " ".join(text.splitlines())


def _plain_name(folder_name: str) -> str:
    """A study name the schema accepts (letters, digits, ``_ . -``) from a folder name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder_name).strip("._-").replace("..", "_")
    return name[:100] or "study"


def _comment_inputs(name: str) -> str:
    return _comment(InputsConfig, name)


def _glm_lines(table: pd.DataFrame | None) -> list[str]:
    if table is None:
        return ["", "# glm:  # needs inputs.covariates", "#   formula: age + C(sex) + TIV",
                "#   contrasts:", "#     age: -age"]
    columns = [str(c) for c in table.columns]
    terms, contrasts = [], []
    age = _pick(columns, AGE_NAMES)
    if age is not None and pd.api.types.is_numeric_dtype(table[age]):
        terms.append(age)
        contrasts += [(f"{age}_neg", f"-{age}", "GM lower with higher age")]
    for names in (SEX_NAMES, GROUP_NAMES):
        col = _pick(columns, names)
        if col is not None:
            level = _level_contrast(table, col)
            if level is not None:
                terms.append(f"C({col})")
                contrasts.append((col, level[1], f"{level[0]} vs the other level(s)"))
    terms.append("TIV")
    lines = ["", "glm:", f"  maps: s6mwp1{_comment(GlmConfig, 'maps')}",
             f"  formula: {' + '.join(terms)}  # TIV is taken from the preprocessing unless a column",
             "  contrasts:  # name: expression (see docs/study.md)"]
    if not contrasts:
        contrasts = [("TIV", "TIV", "GM scaling with head size")]
    lines += [f"    {name}: \"{expr}\"  # {why}" for name, expr, why in contrasts]
    lines += [f"  subsamples: 100{_comment(GlmConfig, 'subsamples')}",
              f"  fraction: 0.8{_comment(GlmConfig, 'fraction')}",
              f"  permutations: 0{_comment(GlmConfig, 'permutations')}", "  seed: 0"]
    return lines


def write_study_yaml(folder: str | os.PathLike, *, path: str | os.PathLike | None = None,
                     force: bool = False) -> Path:
    """Write :func:`study_yaml_for` to ``path`` (default ``FOLDER/study.yaml``); never overwrite unless ``force``."""
    target = Path(path) if path is not None else Path(folder) / "study.yaml"
    if target.exists() and not force:
        raise ConfigError(f"--output {target}: expected a new file; it exists (use --force to overwrite)")
    text = study_yaml_for(folder, yaml_folder=target.parent)
    return write_text(target, text)
