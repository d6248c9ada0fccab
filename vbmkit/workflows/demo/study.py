"""``vbmkit demo``: simulate a cohort with planted effects and run the whole study on it.

``OUT/cohort`` is written by :func:`vbmkit.workflows.simulate.simulate_cohort`, ``OUT/demo.yaml``
is ``examples/demo.yaml`` (the bundled study), ``OUT/study`` holds the study outputs and
``report.html``. Then the planted effects are checked against the truth: the peak of each
median t-map, the LPBA40 region there, and Pearson r between the median t-map and the true
effect map smoothed like the analysed maps (6 mm FWHM), inside the GLM mask.

With ``full=True`` (what ``vbmkit demo`` runs) the T1 images are simulated and preprocessed
with a fast profile (:data:`DEMO_PREPROCESS`), for a study of minutes rather than hours on
two CPU cores; with ``full=False`` (``vbmkit demo --truth``) the study analyses the simulated
ground-truth tissue maps (``cohort/truth``: what a perfect preprocessing would produce).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from vbmkit.io.atlas import load_atlas, region_at_mm
from vbmkit.io.atomic import write_json, write_text
from vbmkit.io.nifti import load_volume
from vbmkit.io.ownership import claim
from vbmkit.io.resources import example_yaml
from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.stats.agreement import pearson_r
from vbmkit.workflows.simulate.run import simulate_cohort
from vbmkit.workflows.study.run import run_study

#: Contrast of the demo YAML -> the planted effect it should find.
PLANTED = {"age_decline": "age", "patients_lower": "group"}
#: Preprocessing of the simulated T1 images: the fast profile (1.5 mm segmentation grid, no
#: 1.5 mm registration level, two subjects at a time). It keeps the second segmentation pass under
#: deformed priors: with affine priors only (before 2026-12-01) the planted age effect came through
#: at r 0.620 on the demo's cohort against 0.669 with them (``benchmarks/map_fidelity.py``), because
#: priors that follow the template pull an atrophied region's GM back towards the template's.
DEMO_PREPROCESS = {"fwhm": [6.0], "jobs": 2, "segmentation_resolution_mm": 1.5,
                   "registration_iterations": [40, 30, 0]}


@dataclass
class DemoResult:
    """What the demo did and found.

    ``contrasts`` maps a contrast name to ``peak_mm``, ``peak_region``, ``in_planted_region``,
    ``max_median_t`` and ``r_truth`` (Pearson r of the median t-map with the true effect).
    """

    out: Path
    study: Path
    n_subjects: int
    seconds: float
    full: bool
    contrasts: dict[str, dict] = field(default_factory=dict)


def demo_yaml_text(*, full: bool) -> str:
    """The study YAML of the demo (``examples/demo.yaml``; for ``full``, T1 inputs + preprocess)."""
    text = example_yaml("demo").read_text(encoding="utf-8")  # shipped as vbmkit/_examples/demo.yaml
    if not full:
        return text
    data = yaml.safe_load(text)
    data["inputs"].pop("maps")
    data["inputs"]["t1"] = ["cohort"]
    data = {**{k: v for k, v in data.items() if k != "qc"}, "preprocess": DEMO_PREPROCESS, "qc": data.get("qc")}
    return "# examples/demo.yaml with preprocessing of the simulated T1 images (vbmkit demo)\n" + \
        yaml.safe_dump(data, sort_keys=False)


def run_study_demo(out: str | os.PathLike, *, n: int = 30, seed: int = 0, full: bool = False,
                   device: str | None = None, progress: Callable[[str], None] | None = None) -> DemoResult:
    """Simulate ``n`` subjects into ``out/cohort`` and run the demo study into ``out/study``.

    Parameters
    ----------
    out : path
        Demo folder (created).
    n : int
        Subjects (sex and group balanced).
    seed : int
        Seed of the cohort (the study's subsample seed is in the YAML).
    full : bool
        Simulate T1 images and preprocess them instead of analysing the true tissue maps.
    device : str, optional
        ``auto``, ``cpu`` or ``cuda`` for every stage (default: the YAML's, ``auto``).
    progress : callable, optional
        Gets one line per step.
    """
    say = progress if progress is not None else (lambda _m: None)
    t0 = time.perf_counter()
    out = Path(out)
    say(f"[simulate] {n} subjects -> {out / 'cohort'}" + (" (T1 images)" if full else " (truth maps only)"))
    with claim(out, command="demo") as owned:
        owned.register("cohort/", "demo.yaml", "study/")
        simulate_cohort(out / "cohort", n=n, seed=seed, images=full, compress=False)
        yaml_path = write_text(out / "demo.yaml", demo_yaml_text(full=full))
        provenance = run_study(yaml_path, device=device, progress=say)
        owned.finish()
    study = Path(provenance["out"])
    result = DemoResult(out=out, study=study, n_subjects=n, seconds=0.0, full=full)
    result.contrasts = evaluate_demo(study, out / "cohort" / "truth")
    result.seconds = time.perf_counter() - t0
    return result


def evaluate_demo(study: Path, truth: Path) -> dict[str, dict]:
    """Peak of each planted contrast's median t-map, its LPBA40 region, and r with the truth."""
    regions = json.loads((truth / "regions.json").read_text(encoding="utf-8"))
    mask_vol = load_volume(study / "glm" / "mask.nii.gz")
    mask = mask_vol.data > 0
    atlas = load_atlas("lpba40", grid=mask_vol.grid)
    found: dict[str, dict] = {}
    for contrast, effect in PLANTED.items():
        t_path = study / "glm" / contrast / "t_median.nii.gz"
        if not t_path.is_file():
            continue
        t = load_volume(t_path).data
        truth_vol = load_volume(truth / f"effect_{effect}.nii.gz")
        truth_vol.grid.check_same(mask_vol.grid, names=(str(truth / f"effect_{effect}.nii.gz"), "glm mask"))
        smoothed = smooth_fwhm(truth_vol.data[None, None], 6.0, tuple(mask_vol.grid.voxel_size))[0, 0]
        masked_t = torch.where(mask, t, torch.tensor(-torch.inf))
        ijk = np.unravel_index(int(torch.argmax(masked_t)), tuple(t.shape))
        peak_mm = mask_vol.grid.voxel_to_world(np.asarray(ijk, dtype=np.float64))
        region = region_at_mm(atlas, peak_mm)
        # The contrasts test a decline, the truth maps are negative where GM is lost: compare with -truth.
        found[contrast] = {
            "effect": effect,
            "peak_mm": [round(float(v), 1) for v in peak_mm],
            "peak_region": region,
            "in_planted_region": region in regions[effect],
            "planted_regions": regions[effect],
            "max_median_t": float(t[mask].max()),
            "r_truth": float(pearson_r(t, -smoothed, mask=mask, dim=None)),
            "r_truth_unsmoothed": float(pearson_r(t, -truth_vol.data, mask=mask, dim=None)),
        }

    write_json(study / "demo_check.json", found)
    return found
