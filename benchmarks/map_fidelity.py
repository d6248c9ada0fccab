"""Issue 13, must-show 3: how faithful the modulated maps are to the truth (SYNTHETIC cohorts).

For each seed: ``vbmkit simulate`` writes N T1 images with their true maps
(``truth/<name>/mri/mwp1``, ``s6mwp1``: the template-space GM a perfect pipeline would give,
holding the subject's native GM volume) and true effect maps. Each profile then runs the demo's
study on the T1 images (``examples/demo.yaml`` with a ``preprocess`` section):

- ``full``: the pipeline's defaults (what ``vbmkit preprocess`` runs);
- ``fast``: the demo's fast profile (``DEMO_PREPROCESS``: 1.5 mm segmentation, no 1.5 mm
  registration level); ``fast_affine_priors``: the same with one segmentation pass under affine
  priors, the fast profile before 2026-12-01;
- ``full_v4``, ``fast_v4``: the same with pipeline version 4's registration and modulation
  (``registration: demons``, ``modulation: pull``), the "before" of issue 13.

Printed per profile: the median over subjects (and range) of the voxel Pearson r of mwp1 and of
s6mwp1 with the true maps inside the template brain (Template_4_GS GM + WM > 0.5), and the
planted age effect's recovery: r of the median age t-map (100 subsamples of 80 %,
``age + C(sex) + C(group) + TIV``, contrast ``-age``) with the true effect smoothed by 6 mm
inside the GLM mask (as ``vbmkit demo`` reports it), per seed. The truth-map reference (the
same study on the true maps, ``vbmkit demo --truth``) is printed with ``--truth``.

Why that r falls short of the truth's: ``slope`` is the age slope of the planted regions' GM
through the profile divided by the same slope on the true maps (1: the atrophy comes through in
full), and ``noise`` the ratio of the residual SDs; the regional GM is each subject's s6mwp1
weighted by the true age effect's magnitude, regressed on the study's design (``glm/design.csv``).

Synthetic: every figure is on cohorts simulated from Template_4_GS, not on real data.

    .venv/bin/python benchmarks/map_fidelity.py --work /tmp/fidelity [--n 12] [--seeds 0,1]
        [--profiles full,fast,full_v4,fast_v4] [--truth] [--jobs 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vbmkit.io.nifti import load_volume
from vbmkit.io.templates import load_shooting_template
from vbmkit.workflows.demo.study import DEMO_PREPROCESS, demo_yaml_text, evaluate_demo
from vbmkit.workflows.simulate.run import simulate_cohort
from vbmkit.workflows.study import run_study

PROFILES = {"full": {"fwhm": [6.0], "jobs": 1}, "fast": dict(DEMO_PREPROCESS, jobs=1),
            # the fast profile before 2026-12-01: one segmentation pass, with affine priors only
            "fast_affine_priors": dict(DEMO_PREPROCESS, jobs=1, deformed_priors=False)}
#: Pipeline version 4's registration and modulation (log-domain demons, pull), for before/after;
#: version 4's fast profile segmented once, with affine priors.
BEFORE = {"registration": "demons", "modulation": "pull"}
PROFILES.update({"full_v4": dict(PROFILES["full"], **BEFORE), "fast_v4": dict(PROFILES["fast_affine_priors"], **BEFORE)})


def study_yaml(profile: str | None, jobs: int = 1) -> str:
    """The demo's study on the T1 images with ``profile``'s preprocessing (None: on the true maps)."""
    if profile is None:
        return demo_yaml_text(full=False)
    data = yaml.safe_load(demo_yaml_text(full=True))
    data["preprocess"] = dict(PROFILES[profile], jobs=jobs)
    data["out"] = f"study_{profile}"
    data["roi"] = None
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False)


def voxel_r(study: Path, cohort: Path, brain: np.ndarray) -> dict[str, list[float]]:
    """Per subject: Pearson r of mwp1 and s6mwp1 with the truth inside ``brain``."""
    out: dict[str, list[float]] = {"mwp1": [], "s6mwp1": []}
    for truth_dir in sorted((cohort / "truth").glob("sub-*_T1w")):
        name = truth_dir.name
        for kind in out:
            ours = load_volume(study / "preprocess" / name / "mri" / f"{kind}{name}.nii.gz").data.numpy()
            true = load_volume(next((truth_dir / "mri").glob(f"{kind}{name}.nii*"))).data.numpy()
            out[kind].append(float(np.corrcoef(ours[brain], true[brain])[0, 1]))
    return out


def planted_slope(study: Path, cohort: Path) -> dict[str, float]:
    """Age slope and residual SD of the planted regions' GM (s6mwp1 weighted by |true age effect|),
    through ``study``'s preprocessing relative to the true maps, on the study's own design."""
    design = pd.read_csv(study / "glm" / "design.csv").set_index("participant_id")
    weight = np.abs(load_volume(cohort / "truth" / "effect_age.nii.gz").data.numpy()).ravel()
    fits = {}
    for label, folder in (("ours", study / "preprocess"), ("truth", cohort / "truth")):
        index = []
        for pid in design.index:
            name = f"{pid}_T1w"
            path = next((folder / name / "mri").glob(f"s6mwp1{name}.nii*"))
            index.append(float(load_volume(path).data.numpy().ravel() @ weight))
        x, y = design.to_numpy(dtype=float), np.asarray(index)
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        fits[label] = (beta[list(design.columns).index("age")], np.sqrt(((y - x @ beta) ** 2).sum() / (len(y) - x.shape[1])))
    return {"slope": float(fits["ours"][0] / fits["truth"][0]), "noise": float(fits["ours"][1] / fits["truth"][1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="working folder (reruns skip finished work)")
    ap.add_argument("--n", type=int, default=12, help="subjects per cohort (at least 10 for the issue)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--profiles", default="full,fast")
    ap.add_argument("--truth", action="store_true", help="also the study on the true maps (reference)")
    ap.add_argument("--jobs", type=int, default=1, help="subjects preprocessed in parallel (outputs do not depend on it)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (CPU and CUDA maps agree: benchmarks/device_agreement.py)")
    args = ap.parse_args()
    template = load_shooting_template()
    brain = ((template.data[0] + template.data[1]) > 0.5).numpy()
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    results: dict[str, dict] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        root = args.work / f"seed{seed}"
        simulate_cohort(root / "cohort", n=args.n, seed=seed, images=True, compress=False)
        for profile in ([None] if args.truth else []) + profiles:
            label = profile or "truth maps"
            path = root / f"{profile or 'truth'}.yaml"
            text = study_yaml(profile, args.jobs)
            if profile is None:
                text = text.replace("out: study", "out: study_truth")
            path.write_text(text)
            provenance = run_study(path, device=args.device)
            study = Path(provenance["out"])
            planted = evaluate_demo(study, root / "cohort" / "truth")["age_decline"]
            entry = results.setdefault(label, {"mwp1": [], "s6mwp1": [], "age_r": []})
            entry["age_r"].append(planted["r_truth"])
            slope = ""
            if profile is not None:
                for kind, values in voxel_r(study, root / "cohort", brain).items():
                    entry[kind] += values
                fit = planted_slope(study, root / "cohort")
                entry.setdefault("slope", []).append(fit["slope"])
                entry.setdefault("noise", []).append(fit["noise"])
                slope = f"; planted regions' GM vs truth: age slope x {fit['slope']:.2f}, residual SD x {fit['noise']:.2f}"
            print(f"seed {seed}, {label}: planted age effect r = {planted['r_truth']:.3f} "
                  f"(peak in {planted['peak_region']}){slope}", flush=True)
    print(f"SYNTHETIC cohorts: n = {args.n} per seed, seeds {args.seeds}")
    for label, entry in results.items():
        line = f"SUMMARY {label}: age effect r per seed {', '.join(f'{r:.3f}' for r in entry['age_r'])} " \
               f"(mean {np.mean(entry['age_r']):.3f})"
        for kind in ("mwp1", "s6mwp1"):
            if entry[kind]:
                v = np.asarray(entry[kind])
                line += f"; voxel r {kind} median {np.median(v):.3f} ({v.min():.3f}-{v.max():.3f}, {v.size} subjects)"
        if entry.get("slope"):
            line += (f"; planted regions' age slope x {np.mean(entry['slope']):.2f}, "
                     f"residual SD x {np.mean(entry['noise']):.2f} (mean over seeds)")
        print(line)
    # one file per run, so that runs with other seeds or profiles in the same --work keep theirs
    tag = f"n{args.n}_seeds{args.seeds.replace(',', '-')}_{'-'.join(profiles) or 'none'}{'_truth' if args.truth else ''}"
    (args.work / f"map_fidelity_{tag}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
