"""Builders of tiny vbmkit / CAT12 / SPM12 output folders with a known relation, for the compare tests.

The reference side is a noisy copy of ours shifted by one voxel along x: every agreement figure
is then well inside (0, 1) and can be recomputed independently with numpy/scipy.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from tests.fixtures.foreign_writers import write_cat12_report, write_catroi_xml
from vbmkit.io.atomic import write_json

NATIVE_SHAPE = (12, 13, 14)
NATIVE_AFFINE = np.array([[-1.2, 0, 0, 8.0], [0, 1.0, 0, -6.0], [0, 0, 1.5, -9.0], [0, 0, 0, 1]])
TEMPLATE_SHAPE = (10, 11, 12)
TEMPLATE_AFFINE = np.array([[-2.0, 0, 0, 10.0], [0, 2.0, 0, -11.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])
REGIONS = [(21, "lSupFroG"), (22, "rSupFroG"), (23, "lMidFroG"), (24, "rMidFroG"), (27, "lPrcG")]


def _sphere(shape, radius_frac=0.42) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return sum(g**2 for g in grids) < (2 * radius_frac) ** 2


def _save(path: Path, data: np.ndarray, affine: np.ndarray, *, dtype=np.float32, descrip: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    if descrip:
        img.header["descrip"] = descrip.encode()
    nib.save(img, str(path))


def shifted_copy(x: np.ndarray, rng: np.random.Generator, *, noise: float, lo: float, hi: float,
                 mask: np.ndarray) -> np.ndarray:
    """The known relation: roll by one voxel along x, add Gaussian noise, clip, zero outside ``mask``."""
    y = np.roll(x, 1, axis=0) + rng.normal(0, noise, x.shape)
    return np.where(mask, np.clip(y, lo, hi), 0.0).astype(np.float32)


def subject_names(n: int) -> list[str]:
    return [f"sub-{i + 1:02d}_T1w" for i in range(n)]


def make_study(root: Path, *, n: int = 12, seed: int = 0, layout: str = "standard",
               extra_ours: bool = True, old_xml: bool = False) -> dict:
    """Write ``root/ours`` (vbmkit layout), ``root/cat12`` (CAT12 ``layout``) and ``root/participants.tsv``.

    Returns a dict of the paths and the ground truth arrays (``p0``, ``mwp1`` of both sides).
    """
    rng = np.random.default_rng(seed)
    ours, cat = root / "ours", root / "cat12"
    nmask, tmask = _sphere(NATIVE_SHAPE), _sphere(TEMPLATE_SHAPE)
    age = rng.uniform(20, 80, n)
    blob = np.zeros(TEMPLATE_SHAPE)
    blob[3:6, 4:7, 4:8] = 1.0
    blob = ndimage.gaussian_filter(blob, 1.0)
    truth: dict = {"p0": {}, "mwp1": {}, "mwp2": {}, "s6mwp1": {}}
    long_ours, long_ref = [], []
    names = subject_names(n)
    for i, name in enumerate(names):
        p0 = ndimage.gaussian_filter(rng.normal(size=NATIVE_SHAPE), 1.5)
        p0_full = np.clip(2.0 + p0 / p0.std(), 0.0, 3.0)  # the field is rolled before masking: no edge jump
        p0 = np.where(nmask, p0_full, 0.0).astype(np.float32)
        p0_ref = shifted_copy(p0_full, rng, noise=0.2, lo=0.0, hi=3.0, mask=nmask)
        maps, full = {}, {}
        for kind, mean in (("mwp1", 0.5), ("mwp2", 0.4)):
            base = ndimage.gaussian_filter(rng.normal(size=TEMPLATE_SHAPE), 2.0)
            m = mean + 0.15 * base / base.std() - (0.03 * (age[i] - 50) * blob if kind == "mwp1" else 0)
            full[kind] = np.clip(m, 0, 1)
            maps[kind] = np.where(tmask, full[kind], 0.0).astype(np.float32)
        ref_maps = {k: shifted_copy(v, rng, noise=0.05, lo=0.0, hi=1.0, mask=tmask) for k, v in full.items()}
        s6, s6_ref = (ndimage.gaussian_filter(x["mwp1"], 1.0) for x in (maps, ref_maps))
        # ours: vbmkit layout
        mri = ours / name / "mri"
        _save(mri / f"p0{name}.nii.gz", p0, NATIVE_AFFINE)
        for kind in ("mwp1", "mwp2"):
            _save(mri / f"{kind}{name}.nii.gz", maps[kind], TEMPLATE_AFFINE)
        _save(mri / f"s6mwp1{name}.nii.gz", s6, TEMPLATE_AFFINE)
        tiv = float(rng.uniform(1300, 1700))
        gm, wm = 0.45 * tiv, 0.35 * tiv
        write_json(ours / name / "report" / f"{name}.json",
                   {"name": name, "volumes_ml": {"gm": gm, "wm": wm, "csf": tiv - gm - wm, "tiv": tiv}})
        # reference: CAT12 layout
        if layout == "standard":
            d_mri, d_rep, d_lab = cat / "mri", cat / "report", cat / "label"
        else:
            sub = name.split("_")[0]
            d_mri = d_rep = d_lab = cat / sub / "anat"
        _save(d_mri / f"p0{name}.nii", p0_ref, NATIVE_AFFINE)
        for kind in ("mwp1", "mwp2"):
            _save(d_mri / f"{kind}{name}.nii", ref_maps[kind], TEMPLATE_AFFINE)
        _save(d_mri / f"s6mwp1{name}.nii", s6_ref, TEMPLATE_AFFINE)
        ref_tiv = tiv + float(rng.normal(0, 20))
        write_cat12_report(d_rep / f"cat_{name}.xml", name=name, tiv_ml=ref_tiv,
                           vol_abs_cgw=[ref_tiv - gm * 1.02 - wm, gm * 1.02, wm, 0.5, 0.0],
                           ratings={"NCR": 2.1, "ICR": 1.4, "res_RMS": 2.0, "IQR": 2.05, "SIQR": 2.2},
                           version="old" if old_xml else "new")
        for rid, abbr in REGIONS:
            for tissue, scale in (("gm", 10.0), ("wm", 7.0)):
                v = scale * (1 + 0.2 * rng.normal()) - (0.01 * age[i] if tissue == "gm" else 0)
                row = {"subject": name, "atlas": "lpba40", "region_id": rid, "region": abbr,
                       "hemisphere": "left" if abbr[0] == "l" else "right", "tissue": tissue}
                long_ours.append({**row, "volume_ml": v})
                long_ref.append({**row, "volume_ml": 1.03 * v + 0.3 * rng.normal()})
        write_catroi_xml(d_lab / f"catROI_{name}.xml",
                         pd.DataFrame([r for r in long_ref if r["subject"] == name]))
        truth["p0"][name] = (p0, p0_ref)
        truth["mwp1"][name] = (maps["mwp1"], ref_maps["mwp1"])
        truth["mwp2"][name] = (maps["mwp2"], ref_maps["mwp2"])
        truth["s6mwp1"][name] = (s6, s6_ref)
    if extra_ours:  # a subject CAT12 does not have
        _save(ours / "sub-99_T1w" / "mri" / "p0sub-99_T1w.nii.gz", np.zeros(NATIVE_SHAPE), NATIVE_AFFINE)
    (ours / "roi").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(long_ours).to_csv(ours / "roi" / "roi_long.csv", index=False)
    cov = pd.DataFrame({"participant_id": [nm.split("_")[0] for nm in names], "age": age,
                        "sex": rng.choice(["F", "M"], n)})
    cov.to_csv(root / "participants.tsv", sep="\t", index=False)
    return {"ours": ours, "cat12": cat, "covariates": root / "participants.tsv", "truth": truth,
            "names": names, "roi_ours": pd.DataFrame(long_ours), "roi_ref": pd.DataFrame(long_ref)}


#: SPM12's default normalised grid (2 mm MNI, 91 x 109 x 91) and CAT12's / vbmkit's 1.5 mm output grid.
SPM_SHAPE = (91, 109, 91)
SPM_AFFINE = np.array([[-2.0, 0, 0, 90.0], [0, 2.0, 0, -126.0], [0, 0, 2.0, -72.0], [0, 0, 0, 1]])
CAT_SHAPE = (113, 137, 113)
CAT_AFFINE = np.array([[-1.5, 0, 0, 84.0], [0, 1.5, 0, -120.0], [0, 0, 1.5, -72.0], [0, 0, 0, 1]])


#: SPM12 Normalise's default grid (bounding box [-78 -112 -70; 78 76 85], 2 mm): 79 x 95 x 78.
NORMALISE_SHAPE = (79, 95, 78)
NORMALISE_AFFINE = np.array([[-2.0, 0, 0, 78.0], [0, 2.0, 0, -112.0], [0, 0, 2.0, -70.0], [0, 0, 0, 1]])


def cropped_fov(shape, affine) -> np.ndarray:
    """Voxels outside a subject's field of view cut at z > 60 mm and y < -100 mm: where spm_write_sn
    writes NaN into mwc1/mwc2 (the top of the head and the back of the cerebellum missing)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    return (xyz[..., 2] > 60) | (xyz[..., 1] < -100)


def make_spm_study(root: Path, *, n: int = 3, seed: int = 1, nan_outside: bool = False,
                   grid: str = "oldseg") -> dict:
    """vbmkit outputs with p1/p2/p3 and mwp1/mwp2 on the 1.5 mm grid, and an SPM12 folder in SPM12's
    naming: native c1/c2/c3 (shifted noisy copies of p1/p2/p3) and mwc1/mwc2 on the 2 mm 91 x 109 x 91
    grid of OldSeg (``grid="normalise"``: 79 x 95 x 78), ours resampled there with scipy, plus noise.
    ``nan_outside``: mwc1/mwc2 are NaN outside a cropped field of view (:func:`cropped_fov`)."""
    spm_shape, spm_affine = (SPM_SHAPE, SPM_AFFINE) if grid == "oldseg" else (NORMALISE_SHAPE, NORMALISE_AFFINE)
    outside = cropped_fov(spm_shape, spm_affine) if nan_outside else np.zeros(spm_shape, dtype=bool)
    rng = np.random.default_rng(seed)
    ours, spm = root / "ours", root / "spm"
    nmask = _sphere(NATIVE_SHAPE)
    tm = _sphere(CAT_SHAPE, 0.3)
    truth: dict = {}
    for name in subject_names(n):
        raw = ndimage.gaussian_filter(rng.gamma(2.0, size=(*NATIVE_SHAPE, 3)), (1.5, 1.5, 1.5, 0))
        full = raw / raw.sum(-1, keepdims=True)  # CSF, GM, WM fractions summing to 1
        probs = np.where(nmask[..., None], full, 0.0).astype(np.float32)
        ref = np.stack([shifted_copy(full[..., c], rng, noise=0.05, lo=0, hi=1, mask=nmask) for c in range(3)], -1)
        ref = ref / np.maximum(ref.sum(-1, keepdims=True), 1.0)  # probabilities never sum above 1
        mri = ours / name / "mri"
        for k, c in ((1, 1), (2, 2), (3, 0)):  # p1/c1 GM, p2/c2 WM, p3/c3 CSF
            _save(mri / f"p{k}{name}.nii.gz", probs[..., c], NATIVE_AFFINE)
            _save(spm / f"c{k}{name}.nii", ref[..., c], NATIVE_AFFINE)
        field = ndimage.gaussian_filter(rng.normal(size=CAT_SHAPE).astype(np.float32), 3.0)
        m1 = np.where(tm, 0.5 + 0.15 * field / field.std(), 0.0).astype(np.float32)
        _save(mri / f"mwp1{name}.nii.gz", m1, CAT_AFFINE)
        _save(mri / f"mwp2{name}.nii.gz", 0.8 * m1, CAT_AFFINE)
        mwc1 = (_resample_to(m1, CAT_AFFINE, spm_shape, spm_affine) + rng.normal(0, 0.05, spm_shape)).astype(np.float32)
        mwc1[outside] = np.nan
        _save(spm / f"mwc1{name}.nii", mwc1, spm_affine)
        _save(spm / f"mwc2{name}.nii", 0.8 * mwc1, spm_affine)
        vox = abs(np.linalg.det(NATIVE_AFFINE[:3, :3])) / 1000
        write_json(ours / name / "report" / f"{name}.json",
                   {"volumes_ml": {"gm": float(probs[..., 1].sum() * vox), "wm": float(probs[..., 2].sum() * vox),
                                   "csf": float(probs[..., 0].sum() * vox), "tiv": float(probs.sum() * vox)}})
        truth[name] = {"probs": probs, "ref": ref, "mwp1": m1, "mwc1": mwc1}
    return {"ours": ours, "spm": spm, "truth": truth, "shape": spm_shape, "affine": spm_affine,
            "n_nan": int(outside.sum())}


def _resample_to(data: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray) -> np.ndarray:
    """Trilinear resampling with scipy (independent of vbmkit.space), zeros outside."""
    m = np.linalg.inv(affine) @ target_affine
    return ndimage.affine_transform(data, m[:3, :3], m[:3, 3], output_shape=shape, order=1, mode="constant")
