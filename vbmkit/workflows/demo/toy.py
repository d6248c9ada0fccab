"""The interim ``vbmkit demo``: write a toy cohort with a planted age effect and fit it.

The cohort (:func:`vbmkit.simulate.toy_maps.make_toy_cohort`) is written as CAT12-style file
names (``<out>/maps/s6mwp1sub-XX.nii.gz``) with a BIDS ``participants.tsv``, then
:func:`vbmkit.workflows.glm.run_glm` fits ``age + C(sex) + TIV`` with the paper's 100 x 80 %
subsample protocol and a permutation FWE map. The result is compared with the planted truth.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit.config import GlmConfig
from vbmkit.io.atomic import write_text
from vbmkit.io.nifti import load_volume, save_volume
from vbmkit.io.ownership import claim
from vbmkit.simulate.toy_maps import make_toy_cohort
from vbmkit.stats.agreement import pearson_r
from vbmkit.workflows.glm.run import run_glm

#: Voxel size of the toy grid (mm); the 1.5 mm CAT12 grid at half resolution.
VOXEL_MM = 3.0
CONTRAST = "age_decline"


@dataclass(frozen=True)
class DemoResult:
    """What ``vbmkit demo`` prints.

    Attributes
    ----------
    out : Path
    n_subjects : int
    peak_found_mm, peak_true_mm : tuple of float
        World coordinates of the largest median t and of the planted effect's centre.
    distance_mm : float
    r_median_t : float
        Pearson r of the median t-map with the planted effect map inside the analysis mask.
    max_median_t : float
    n_fwe : int or None
        Voxels with p_FWE < 0.05.
    seconds : float
    """

    out: Path
    n_subjects: int
    peak_found_mm: tuple[float, float, float]
    peak_true_mm: tuple[float, float, float]
    distance_mm: float
    r_median_t: float
    max_median_t: float
    n_fwe: int | None
    seconds: float


def toy_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """LAS-stored affine (like CAT12's outputs) centred near the MNI origin."""
    affine = np.diag([-VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    centre = (np.asarray(shape) - 1) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre + np.array([0.0, -18.0, 10.0])
    return affine


def run_demo(out: str | Path, *, n_subjects: int = 60, subsamples: int = 100, permutations: int = 100,
             seed: int = 0, device: str = "auto", progress: bool = True) -> DemoResult:
    """Write the toy cohort under ``out/maps`` and its GLM under ``out/glm``; compare with the truth."""
    t0 = time.perf_counter()
    out = Path(out)
    with claim(out, command="demo") as owned:
        owned.register("maps/", "participants.tsv", "truth_age_effect.nii.gz", "glm/")
        result = _toy_demo_into(out, n_subjects=n_subjects, subsamples=subsamples, permutations=permutations,
                                seed=seed, device=device, progress=progress)
        owned.finish(keep=owned.previous["files"] if owned.previous else ())
    return dataclasses.replace(result, seconds=time.perf_counter() - t0)


def _toy_demo_into(out: Path, *, n_subjects: int, subsamples: int, permutations: int, seed: int, device: str,
                   progress: bool) -> DemoResult:
    """The work of :func:`run_demo` inside its claimed folder."""
    cohort = make_toy_cohort(n_subjects, seed=seed)
    shape = tuple(cohort.maps.shape[1:])
    stored = toy_affine(shape)
    # The cohort is generated in RAS voxel order; LAS storage flips the first axis.
    ras_affine = stored @ np.array([[-1, 0, 0, shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    ids = [f"sub-{i + 1:02d}" for i in range(n_subjects)]
    wanted = {f"s6mwp1{ident}.nii.gz" for ident in ids}
    for stale in sorted((out / "maps").glob("s6mwp1sub-*.nii.gz")):
        if stale.name not in wanted:  # left by an earlier demo with more subjects
            stale.unlink()
    for ident, volume in zip(ids, cohort.maps, strict=True):
        # always rewritten: another --seed gives other maps under the same names
        save_volume(out / "maps" / f"s6mwp1{ident}.nii.gz", volume, ras_affine, orientation_of=stored)
    table = pd.DataFrame({"participant_id": ids, "age": np.round(cohort.age.numpy(), 1), "sex": cohort.sex,
                          "TIV": np.round(cohort.tiv.numpy(), 1)})
    write_text(out / "participants.tsv", table.to_csv(sep="\t", index=False))
    save_volume(out / "truth_age_effect.nii.gz", cohort.truth, ras_affine, orientation_of=stored)
    settings = GlmConfig(formula="age + C(sex) + TIV", contrasts={CONTRAST: "-age"}, subsamples=subsamples,
                         permutations=permutations, seed=seed, mask_threshold=0.1)
    summary = run_glm([out / "maps"], out / "participants.tsv", id_column="participant_id", settings=settings,
                      out=out / "glm", device=device, progress=progress)
    files = summary["contrasts"][CONTRAST]["files"]
    stat = load_volume(out / "glm" / files.get("median", files["stat"]))
    mask = load_volume(out / "glm" / "mask.nii.gz").data > 0
    truth = load_volume(out / "truth_age_effect.nii.gz")
    r = float(pearson_r(stat.data[mask], -truth.data[mask]))
    found = np.unravel_index(int(torch.argmax(torch.where(mask, stat.data, -torch.inf))), stat.data.shape)
    true_ijk = np.unravel_index(int(torch.argmin(truth.data)), truth.data.shape)
    found_mm = stat.grid.voxel_to_world(np.asarray(found))
    true_mm = truth.grid.voxel_to_world(np.asarray(true_ijk))
    return DemoResult(out=out, n_subjects=summary["n_subjects"],
                      peak_found_mm=tuple(float(v) for v in found_mm), peak_true_mm=tuple(float(v) for v in true_mm),
                      distance_mm=float(np.linalg.norm(found_mm - true_mm)), r_median_t=r,
                      max_median_t=float(stat.data[mask].max()),
                      n_fwe=summary["contrasts"][CONTRAST]["n_voxels_p_fwe_below_0.05"],
                      seconds=0.0)
