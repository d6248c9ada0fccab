"""Old demons vs the variational registration (issue 13, items 1-3) on ds002748 subjects.

For each subject: the pipeline's steps (``vbmkit.workflows.preprocess.steps``: affine to the
template, classic segmentation in subject space with the second, deformed-prior pass, GM/WM
resampled to the Template_4_GS grid) give the affinely aligned GM/WM; both registrations are
run on them and each prints warp MSE (deepmriprep's definition), torchreg's linear elasticity
(the paper's figure), the Jacobian determinant inside the template brain (GM + WM > 0.5):
0.5 / 99.5 percentiles divided by the median, min, max, folded voxels; bending and
linear-elastic energies of the displacement in mm; seconds; and GM volume conservation of
pull vs push modulation (sum of mwp1 x voxel volume vs native GM).

The segmentation is slow on 2 cores, so its outputs are cached in ``--cache`` (gitignored
``out/``); a second run reuses them. Usage::

    nice -n 10 .venv/bin/python benchmarks/registration_energy.py --subjects 4
    nice -n 10 .venv/bin/python benchmarks/registration_energy.py --subjects 4 --prepare-only

The pipeline's settings (version 6), against the same with a 1.5 mm velocity at the last level::

    .venv/bin/python benchmarks/registration_energy.py --subjects 5 --methods variational \
        --lambdas 2,1,0.8 --weights 1e-4,1e-3,0.3,0.05,0.2 --velocity-levels 4,2,2 --label v6_3mm
    .venv/bin/python benchmarks/registration_energy.py --subjects 5 --methods variational \
        --lambdas 2,1,1 --weights 1e-4,1e-3,0.3,0.05,0.2 --label v5_1.5mm
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ds002748"


def prepare(sub: str, cache: Path) -> Path:
    """Affine + segmentation of one subject, cached as ``cache/<sub>.pt``."""
    from vbmkit.config import PreprocessConfig
    from vbmkit.workflows.preprocess import steps as st

    path = cache / f"{sub}.pt"
    if path.exists():
        return path
    t0 = time.perf_counter()
    cpu = torch.device("cpu")
    nat = st.load_t1(DATA / sub / "anat" / f"{sub}_T1w.nii.gz")
    mask = nat.data > 0  # ds002748 is skull-stripped
    aff = st.affine_to_template(nat, mask, device=cpu)
    inp = st.segmentation_input(nat, mask, PreprocessConfig())
    seg = st.segment_native(inp, aff.matrix, device=cpu)
    seg = st.segment_with_deformed_priors(inp, seg, aff.matrix, device=cpu)
    moving = st.tissue_on_output_grid(seg, aff.matrix)
    native = st.to_native(seg, nat.grid)[1:3].to(torch.float16)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"moving": moving, "native": native, "native_affine": nat.grid.affine,
                "native_shape": nat.grid.shape, "matrix": aff.matrix}, path)
    print(f"{sub}: prepared in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def _figures(name: str, res, seconds: float, data: dict, shoot, brain: torch.Tensor) -> dict:
    from vbmkit.preprocess.jacobian import jacobian_determinant
    from vbmkit.preprocess.metrics import (
        bending_energy,
        elastic_energy,
        jacobian_summary,
        linear_elasticity,
        warp_mse,
    )
    from vbmkit.preprocess.modulate import modulate_native
    from vbmkit.preprocess.warp import deformation_to_displacement
    from vbmkit.space import Grid

    phi = res.deformation
    native = data["native"].float()
    ngrid = Grid(tuple(data["native_shape"]), np.asarray(data["native_affine"]))
    pull = modulate_native(native, ngrid, shoot.grid, data["matrix"], phi, method="pull")
    push = modulate_native(native, ngrid, shoot.grid, data["matrix"], phi, inverse=res.inverse, method="push")
    nat_gm = float(native[0].double().sum()) * ngrid.voxel_volume_ml
    vox = tuple(float(x) for x in shoot.grid.voxel_size)
    disp = deformation_to_displacement(phi)[0]
    jac = jacobian_summary(jacobian_determinant(phi), brain)
    return {
        "method": name, "warp_mse": warp_mse(pull.warped, shoot.data[:2]),
        "le_torchreg": linear_elasticity(disp), "jac_p0.5/med": jac["p0.5_rel"], "jac_p99.5/med": jac["p99.5_rel"],
        "jac_min": jac["min"], "jac_max": jac["max"], "folds": jac["n_folded"],
        "bending_mm": bending_energy(disp, vox), "elastic_mm": elastic_energy(disp, vox), "seconds": seconds,
        "gm_pull_%": 100 * (float(pull.modulated[0].double().sum()) * shoot.grid.voxel_volume_ml / nat_gm - 1),
        "gm_push_%": 100 * (float(push.modulated[0].double().sum()) * shoot.grid.voxel_volume_ml / nat_gm - 1),
    }


FORMATS = {"warp_mse": "{:.5f}", "le_torchreg": "{:.1f}", "jac_p0.5/med": "{:.3f}", "jac_p99.5/med": "{:.3f}",
           "jac_min": "{:.3f}", "jac_max": "{:.2f}", "folds": "{}", "bending_mm": "{:.5f}",
           "elastic_mm": "{:.5f}", "seconds": "{:.1f}", "gm_pull_%": "{:+.3f}", "gm_push_%": "{:+.4f}"}


def _print(rows: list[dict]) -> None:
    print(f"{'subject':8s} {'method':12s} " + " ".join(f"{k:>13s}" for k in FORMATS), flush=True)
    for r in rows:
        print(f"{r['subject']:8s} {r['method']:12s} "
              + " ".join(f"{FORMATS[k].format(r[k]):>13s}" for k in FORMATS), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default="4", help="the first N subjects of ds002748, or a list sub-02,sub-03")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "registration_energy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--methods", default="demons,variational")
    ap.add_argument("--lambdas", default="", help="comma-separated lambda per level (default: the function's)")
    ap.add_argument("--iterations", default="", help="comma-separated steps per level (default: the function's)")
    ap.add_argument("--weights", default="", help="5 comma-separated regulariser weights (default: the function's)")
    ap.add_argument("--steps", type=int, default=0, help="squarings of the scaling and squaring (default: the function's)")
    ap.add_argument("--velocity-levels", default="",
                    help="comma-separated velocity grid factor per level, e.g. 4,2,2 (default: the function's)")
    ap.add_argument("--label", default="variational", help="name of the variational run in the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    subjects = sorted(p.name for p in DATA.glob("sub-*"))
    subjects = args.subjects.split(",") if "sub-" in args.subjects else subjects[: int(args.subjects)]
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}", flush=True)
    for sub in subjects:
        prepare(sub, args.cache)
    if args.prepare_only:
        return 0
    from vbmkit.io.templates import load_shooting_template
    from vbmkit.preprocess.nonlinear import register_nonlinear
    from vbmkit.preprocess.variational import register_variational

    shoot = load_shooting_template()
    template = shoot.data[:2].float()
    brain = template.sum(0) > 0.5  # the template brain, GM + WM > 0.5
    kw: dict = {}
    if args.lambdas:
        kw["lambdas"] = tuple(float(x) for x in args.lambdas.split(","))
    if args.iterations:
        kw["iterations"] = tuple(int(x) for x in args.iterations.split(","))
    if args.weights:
        kw["weights"] = tuple(float(x) for x in args.weights.split(","))
    if args.steps:
        kw["steps"] = args.steps
    if args.velocity_levels:
        kw["velocity_levels"] = tuple(int(x) for x in args.velocity_levels.split(","))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(f"variational settings: {kw or 'defaults'}", flush=True)
    rows = []
    for sub in subjects:
        data = torch.load(args.cache / f"{sub}.pt", weights_only=False)
        moving = data["moving"].float()
        for method in methods:
            t0 = time.perf_counter()
            if method == "demons":  # the pipeline's default today (levels 4, 2, 1; 40, 30, 10 updates)
                res = register_nonlinear(moving, template, compute_inverse=True)
            elif method == "variational":
                res = register_variational(moving, template, voxel_size_mm=tuple(shoot.grid.voxel_size), **kw)
            else:
                raise SystemExit(f"--methods: unknown method {method!r} (demons, variational)")
            seconds = time.perf_counter() - t0
            name = args.label if method == "variational" else method
            rows.append({"subject": sub, **_figures(name, res, seconds, data, shoot, brain)})
            _print(rows[-1:])
    print("\nmedians over subjects " + ", ".join(subjects))
    names = [args.label if m == "variational" else m for m in methods]
    _print([{"subject": "median", "method": m,
             **{k: statistics.median(r[k] for r in rows if r["method"] == m) for k in FORMATS}}
            for m in names])
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
