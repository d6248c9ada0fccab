"""The Python API for notebooks: the same workflows as the CLI, returning images and tables.

Names follow nilearn's ``SecondLevelModel`` (a model is configured, fitted, then asked for
contrasts)::

    import vbmkit
    model = vbmkit.GLM("age + C(sex)", subsamples=100, seed=0).fit(images, covariates)
    res = model.compute_contrast("age")
    res.t, res.median_t, res.p, res.q_fdr, res.p_fwe, res.effect   # nibabel images
    res.clusters                                                   # pandas.DataFrame
    res.save("out/age")                                            # what `vbmkit glm` writes

Every result comes from the workflow the CLI runs (:func:`vbmkit.workflows.glm.run_glm`,
:func:`vbmkit.workflows.roi.run_roi`, :func:`vbmkit.workflows.preprocess.run_preprocess`,
:func:`vbmkit.workflows.study.run_study`), run into a temporary folder the object owns, so the
API and the CLI give identical files by construction; images are loaded into memory before the
folder is removed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError, CovariateError, ImageError
from vbmkit.io.atomic import atomic_path
from vbmkit.io.ownership import claim

ImageLike = str | os.PathLike | nib.spatialimages.SpatialImage
ID_COLUMN = "participant_id"


def _in_memory(path: Path) -> nib.Nifti1Image:
    """A NIfTI image whose data are loaded (the file may be deleted afterwards)."""
    img = nib.load(str(path))
    return nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)


def _as_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """Paths or images, one 3-D volume each; a single 4-D image is split along its last axis."""
    if isinstance(images, (str, os.PathLike, nib.spatialimages.SpatialImage)):
        img = images if isinstance(images, nib.spatialimages.SpatialImage) else nib.load(str(images))
        if len(img.shape) == 4:
            data = np.asarray(img.dataobj)
            return [nib.Nifti1Image(data[..., k], img.affine) for k in range(img.shape[3])]
        return [images]
    items = list(images)
    if not items:
        raise ImageError("images: expected at least one image; got none")
    return items


def _stage_images(items: list[ImageLike], folder: Path, prefix: str) -> list[Path]:
    """Put each image in ``folder`` as ``<prefix>img-0001.nii(.gz)`` (links to files, copies of
    in-memory images) so that the workflows match image k to covariate row k by name."""
    width = max(4, len(str(len(items))))
    paths = []
    for k, item in enumerate(items, 1):
        ident = f"img-{k:0{width}d}"
        if isinstance(item, nib.spatialimages.SpatialImage):
            target = folder / f"{prefix}{ident}.nii.gz"
            nib.save(nib.Nifti1Image(np.asarray(item.dataobj, dtype=np.float32), item.affine), str(target))
        else:
            source = Path(item).expanduser().resolve()
            if not source.is_file():
                raise ImageError(f"{item}: expected an image file; it does not exist")
            suffix = ".nii.gz" if source.name.endswith(".gz") else ".nii"
            target = folder / f"{prefix}{ident}{suffix}"
            os.symlink(source, target)
        paths.append(target)
    return paths


def _ids(n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"img-{k:0{width}d}" for k in range(1, n + 1)]


@dataclass(frozen=True, eq=False)
class ContrastResult:
    """The maps and tables of one contrast (``vbmkit glm``'s ``OUT/<contrast>/`` in memory).

    Attributes
    ----------
    name : str
    t : nibabel.Nifti1Image
        The full-sample statistic (t, or F for an F contrast).
    p, q_fdr, effect, std_effect : nibabel.Nifti1Image
    median_t, iqr_t, stability : nibabel.Nifti1Image or None
        With subsamples.
    p_fwe : nibabel.Nifti1Image or None
        With permutations.
    clusters : pandas.DataFrame
    summary : dict
        ``summary.json`` of the run (design, settings, per-contrast figures).
    """

    name: str
    t: nib.Nifti1Image
    p: nib.Nifti1Image
    q_fdr: nib.Nifti1Image
    effect: nib.Nifti1Image
    std_effect: nib.Nifti1Image
    median_t: nib.Nifti1Image | None
    iqr_t: nib.Nifti1Image | None
    stability: nib.Nifti1Image | None
    p_fwe: nib.Nifti1Image | None
    clusters: pd.DataFrame
    summary: dict[str, Any]
    _files: dict[str, bytes] = field(repr=False, default_factory=dict)

    def save(self, out: str | os.PathLike) -> Path:
        """Write the files ``vbmkit glm`` writes for this contrast into ``out`` (byte for byte).

        ``out`` is owned like every vbmkit output folder (:mod:`vbmkit.io.ownership`): a new or
        empty folder, or one an earlier ``save`` wrote.
        """
        with claim(out, command="glm") as owned:
            owned.start()
            owned.register(*self._files)
            for rel, content in self._files.items():
                with atomic_path(owned.path / rel) as tmp:
                    tmp.write_bytes(content)
            owned.finish(self.summary.get("fingerprint"))
        return Path(out)


class GLM:
    """A voxel-wise GLM with subsample stability and permutation FWE, as ``vbmkit glm``.

    Parameters
    ----------
    formula : str
        Right-hand side, e.g. ``"age + C(sex) + TIV"`` (intercept added); parsed against
        vbmkit's formula language, never evaluated.
    subsamples, fraction, permutations, seed, mask, mask_threshold, threshold, stratify,
    standardize, cluster_min_voxels, memory_gb :
        As the options of ``vbmkit glm`` (:class:`vbmkit.config.GlmConfig`).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, formula: str, *, subsamples: int = 100, fraction: float = 0.8, permutations: int = 0,
                 seed: int = 0, device: str = "auto", mask: str | os.PathLike | None = None,
                 mask_threshold: float = 0.1, threshold: float | None = None, stratify: str | None = None,
                 standardize: bool = True, cluster_min_voxels: int = 10, memory_gb: float | None = None) -> None:
        self.settings = dict(formula=formula, subsamples=subsamples, fraction=fraction, permutations=permutations,
                             seed=seed, device=device, mask=mask, mask_threshold=mask_threshold,
                             threshold=threshold, stratify=stratify, standardize=standardize,
                             cluster_min_voxels=cluster_min_voxels, memory_gb=memory_gb)
        # checked now (formula grammar, ranges); the contrast is a placeholder until compute_contrast
        GlmConfig.model_validate({**self.settings, "contrasts": {"check": [1.0]}})
        self._work: tempfile.TemporaryDirectory | None = None
        self._images: list[Path] = []
        self._table: pd.DataFrame | None = None
        self._store: Path | None = None

    def fit(self, images: ImageLike | Sequence[ImageLike], covariates: pd.DataFrame) -> GLM:
        """Take the maps and their covariates (one row per image, in the same order).

        Parameters
        ----------
        images : paths, nibabel images, or one 4-D image
            Maps on one grid (checked when a contrast is computed).
        covariates : pandas.DataFrame
            One row per image; the columns the formula names.

        Returns
        -------
        GLM
            ``self``, so that ``GLM(...).fit(...).compute_contrast(...)`` reads as one line.
        """
        items = _as_list(images)
        self._table = self._start(covariates, _ids(len(items)), "image")
        root = Path(self._work.name)
        (root / "maps").mkdir()
        self._images = _stage_images(items, root / "maps", "s6mwp1")
        self._store = None
        return self

    def _start(self, covariates: pd.DataFrame, ids: list[str], what: str) -> pd.DataFrame:
        """Check one covariate row per ``what`` (image or stored subject), open a fresh working
        folder and return the table with the pairing IDs as its first column."""
        if not isinstance(covariates, pd.DataFrame) or len(covariates) != len(ids):
            raise CovariateError(f"covariates: expected a pandas DataFrame with one row per {what} ({len(ids)}); "
                                 f"got {getattr(covariates, 'shape', type(covariates).__name__)}")
        if ID_COLUMN in covariates.columns:
            raise CovariateError(f"covariates: column {ID_COLUMN!r} is used by vbmkit to pair rows with each "
                                 f"{what} (row k with {what} k); rename it")
        self.close()
        self._work = tempfile.TemporaryDirectory(prefix="vbmkit-glm-")
        table = covariates.reset_index(drop=True).copy()
        table.insert(0, ID_COLUMN, ids)
        table.attrs["source"] = "covariates (DataFrame)"
        return table

    def fit_store(self, store: str | os.PathLike, covariates: pd.DataFrame) -> GLM:
        """Take a subject x voxel store (``vbmkit stack``) and one covariate row per stored subject.

        The maps are streamed from the store in voxel blocks when a contrast is computed, so
        memory does not grow with N x V (no permutations from a store).

        Parameters
        ----------
        store : path
            The store folder.
        covariates : pandas.DataFrame
            One row per subject of the store, in the store's order (``open_store(store).subjects``).

        Returns
        -------
        GLM
            ``self``.
        """
        from vbmkit.io.store import open_store

        table = self._start(covariates, list(open_store(store).subjects), "stored subject")
        self._images, self._table, self._store = [], table, Path(store)
        return self

    def compute_contrast(self, expression: str | Sequence[float], *, name: str | None = None) -> ContrastResult:
        """Fit the model and test one contrast (an expression as ``--contrast`` takes).

        Parameters
        ----------
        expression : str or sequence of float
            ``"age"``, ``"-age"``, ``"C(group)[T.pat]"``, ``"F: age, TIV"``, ``[0, 1, 0]``, ...
        name : str, optional
            Folder name of the contrast (default: derived from the expression).

        Returns
        -------
        ContrastResult
        """
        from vbmkit.workflows.glm import run_glm

        if self._work is None or self._table is None:
            raise ConfigError("GLM: expected fit(images, covariates) before compute_contrast")
        if name is None:
            text = expression if isinstance(expression, str) else " ".join(map(str, expression))
            plain = "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")[:40]
            name = plain if plain and plain[0].isalnum() else f"c_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
        expr = expression if isinstance(expression, str) else [float(v) for v in expression]
        device = self.settings["device"]
        cfg = GlmConfig.model_validate({**self.settings, "contrasts": {name: expr}})
        out = Path(self._work.name) / "glm" / name
        summary = run_glm(self._images, self._table, id_column=ID_COLUMN, settings=cfg, out=out,
                          device=device, progress=False, store=self._store)
        return _read_contrast(out, name, summary)

    def close(self) -> None:
        """Remove the temporary folder (also done when the object is garbage-collected)."""
        if self._work is not None:
            self._work.cleanup()
            self._work = None


def _read_contrast(out: Path, name: str, summary: dict[str, Any]) -> ContrastResult:
    files = summary["contrasts"][name]["files"]

    def img(role: str) -> nib.Nifti1Image | None:
        rel = files.get(role)
        return _in_memory(out / rel) if rel is not None else None

    contents = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.is_file() and not p.name.startswith(".vbmkit")}
    return ContrastResult(name=name, t=img("stat"), p=img("p"), q_fdr=img("q_fdr"), effect=img("effect"),
                          std_effect=img("std_effect"), median_t=img("median"), iqr_t=img("iqr"),
                          stability=img("stability"), p_fwe=img("p_fwe"),
                          clusters=pd.read_csv(out / files["clusters"]), summary=summary, _files=contents)


def roi_volumes(gm_images: Sequence[str | os.PathLike], wm_images: Sequence[str | os.PathLike] | None = None, *,
                atlas: str = "lpba40", subjects: Sequence[str] | None = None, device: str = "auto") -> pd.DataFrame:
    """GM (and WM) volume in mL of every atlas region and subject, as ``vbmkit roi``'s ``roi_long.csv``.

    Parameters
    ----------
    gm_images, wm_images : sequences of paths
        Modulated GM (mwp1) and optionally WM (mwp2) maps on the atlas' template grid, one per
        subject, in the same order.
    atlas : str
        ``lpba40`` or another atlas name or NIfTI path (:func:`vbmkit.io.atlas.load_atlas`).
    subjects : sequence of str, optional
        Subject names for the ``subject`` column (default ``img-0001``, ...).

    Returns
    -------
    pandas.DataFrame
        Long table: subject, atlas, region_id, region, hemisphere, tissue, volume_ml, ...
    """
    from vbmkit.workflows.roi import run_roi

    gm = [Path(p) for p in gm_images]
    wm = [Path(p) for p in wm_images] if wm_images is not None else []
    if wm and len(wm) != len(gm):
        raise ImageError(f"wm_images: expected one per GM image ({len(gm)}); got {len(wm)}")
    names = list(subjects) if subjects is not None else _ids(len(gm))
    if len(names) != len(gm) or len(set(names)) != len(names):
        raise ConfigError(f"subjects: expected {len(gm)} distinct names, one per image; got {names[:5]}...")
    with tempfile.TemporaryDirectory(prefix="vbmkit-roi-") as work:
        root = Path(work)
        (root / "maps").mkdir()
        for kind, paths in (("mwp1", gm), ("mwp2", wm)):
            for name, path in zip(names, paths, strict=False):
                source = path.expanduser().resolve()
                if not source.is_file():
                    raise ImageError(f"{path}: expected an image file; it does not exist")
                suffix = ".nii.gz" if source.name.endswith(".gz") else ".nii"
                os.symlink(source, root / "maps" / f"{kind}{name}{suffix}")
        run_roi([str(root / "maps")], out=root / "roi", atlas=atlas, device=device, progress=False)
        return pd.read_csv(root / "roi" / "roi_long.csv")


@dataclass(frozen=True, eq=False)
class PreprocessResult:
    """One T1 through ``vbmkit preprocess``: images by key (``p0``..``p3``, ``mwp1``, ``mwp2``,
    ``s6mwp1``, ``s6mwp2``, ...) loaded into memory, and the subject's report (volumes in mL,
    quality figures)."""

    images: dict[str, nib.Nifti1Image]
    report: dict[str, Any]

    def __getattr__(self, key: str) -> nib.Nifti1Image:
        images = object.__getattribute__(self, "images")
        if key in images:
            return images[key]
        raise AttributeError(key)

    @property
    def volumes(self) -> dict[str, Any]:
        """TIV and tissue volumes in mL."""
        return self.report.get("volumes_ml", {})


def preprocess_t1(t1: str | os.PathLike, *, device: str = "auto", **settings: Any) -> PreprocessResult:
    """Preprocess one T1 image as ``vbmkit preprocess`` does; settings as the YAML's ``preprocess:``.

    Raises
    ------
    ImageError
        When the T1 cannot be preprocessed (the reason of ``errors.csv``).
    """
    from vbmkit.config import PreprocessConfig
    from vbmkit.workflows.preprocess import run_preprocess
    from vbmkit.workflows.preprocess.naming import output_paths

    cfg = PreprocessConfig.model_validate(settings)
    with tempfile.TemporaryDirectory(prefix="vbmkit-prep-") as work:
        out = Path(work) / "out"
        summary = run_preprocess([str(t1)], out, cfg, device=device, progress=False)
        if summary.failed:
            name, reason = next(iter(summary.failed.items()))
            raise ImageError(f"{t1}: preprocessing failed: {reason}")
        name, report = next(iter(summary.reports.items()))
        paths = output_paths(out, name, cfg)
        images = {k: _in_memory(p) for k, p in paths.items() if k != "report" and p.is_file()}
    return PreprocessResult(images=images, report=report)


class Study:
    """A whole study from its YAML, as ``vbmkit run``: ``Study.from_yaml("study.yaml").run()``."""

    def __init__(self, path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> None:
        from vbmkit.workflows.study import load_study

        self.plan = load_study(path, out=out)  # validates everything, writes nothing
        self.path = Path(path)
        self.out = self.plan.out

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> Study:
        """Read and validate a study YAML."""
        return cls(path, out=out)

    def run(self, *, progress: Any = None) -> dict[str, Any]:
        """Run every configured stage; returns ``provenance.json``'s content."""
        from vbmkit.workflows.study import run_study

        return run_study(self.path, out=self.out, progress=progress)


__all__ = ["GLM", "ContrastResult", "PreprocessResult", "Study", "preprocess_t1", "roi_volumes"]
