"""Closed-form regulariser gradient vs autograd in the variational registration (issue 13, speed).

The variational registration (:mod:`vbmkit.preprocess.variational`) needs ``dR/dv`` once per
accepted step. It used to come from autograd through
:func:`~vbmkit.preprocess.variational.regulariser_energy`; it is now
:func:`~vbmkit.preprocess.variational.regulariser_gradient`, the transposed finite differences
applied in closed form, reusing the derivatives of the energy evaluation. This script

1. runs ``preprocess_subject`` on one T1 with the default (full) settings and keeps the inputs
   of its registration (affinely aligned GM/WM and Template_4_GS on the 1.5 mm grid);
2. registers them ``--pairs`` times with each gradient, interleaved (A, B, A, B: this shared
   machine's speed drifts), and prints the wall times, the number of accepted steps, the final
   energy and the largest difference between the two deformations (voxels).

    .venv/bin/python benchmarks/regulariser_gradient.py [--input T1.nii.gz] [--pairs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "segref" / "chris_t1_fullhead.nii.gz"

from vbmkit.allocator import tune_cpu_allocator  # noqa: E402
from vbmkit.preprocess import variational  # noqa: E402

CLOSED_FORM = variational._regulariser


def autograd_regulariser(v: torch.Tensor, h, weights):
    """The former ``dR/dv``: autograd through the energy (same signature as
    ``variational._regulariser``)."""
    with torch.enable_grad():
        leaf = v.detach().requires_grad_(True)
        energy = CLOSED_FORM(leaf, h, weights)[0]
    return energy.detach(), lambda: torch.autograd.grad(energy, leaf)[0]


def registration_inputs(t1: Path) -> dict:
    """Run the default preprocessing of ``t1`` once; return its registration's arguments."""
    import vbmkit.workflows.preprocess.steps as steps
    from vbmkit.config import PreprocessConfig
    from vbmkit.io.bids import T1Input
    from vbmkit.workflows.preprocess.subject import preprocess_subject

    kept: dict = {}
    original = steps.register_variational

    def keep(moving, fixed, **kwargs):
        kept.update(moving=moving.clone(), fixed=fixed.clone(),
                    kwargs={k: v for k, v in kwargs.items() if k != "progress"})
        return original(moving, fixed, **kwargs)

    steps.register_variational = keep
    try:
        with tempfile.TemporaryDirectory() as tmp:
            preprocess_subject(T1Input(name="subject", path=t1), Path(tmp), PreprocessConfig(), device="cpu")
    finally:
        steps.register_variational = original
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="a 1 mm T1 (default: segref chris_t1_fullhead)")
    ap.add_argument("--pairs", type=int, default=2, help="interleaved A/B pairs of registrations")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"input not found: {args.input} (../shared/data is needed, or pass --input)")
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    print(f"input {args.input.name}, torch threads {args.threads}; preprocessing once for the registration inputs ...",
          flush=True)
    inp = registration_inputs(args.input)
    print(f"registration inputs: moving {tuple(inp['moving'].shape)}, levels {inp['kwargs']['levels']}, "
          f"iterations {inp['kwargs']['iterations']}", flush=True)
    walls: dict[str, list[float]] = {"closed form": [], "autograd": []}
    results = {}
    for pair in range(args.pairs):
        for name, regulariser in (("autograd", autograd_regulariser), ("closed form", CLOSED_FORM)):
            variational._regulariser = regulariser
            try:
                t0 = time.perf_counter()
                res = variational.register_variational(inp["moving"], inp["fixed"], **inp["kwargs"])
                walls[name].append(time.perf_counter() - t0)
            finally:
                variational._regulariser = CLOSED_FORM
            results[name] = res
            print(f"pair {pair + 1}, {name:11s}: {walls[name][-1]:6.2f} s, {len(res.loss_history)} accepted steps, "
                  f"final E {res.loss_history[-1]:.9g}", flush=True)
    a, b = results["autograd"], results["closed form"]
    diff = float((a.deformation - b.deformation).abs().max())
    print(f"largest deformation difference, closed form vs autograd: {diff:.2g} voxels")
    for name, w in walls.items():
        print(f"{name:11s}: " + ", ".join(f"{x:.2f} s" for x in w) + f" (best {min(w):.2f} s)")
    print(f"saving per registration, best vs best: {min(walls['autograd']) - min(walls['closed form']):.2f} s "
          f"({min(walls['autograd']) / min(walls['closed form']):.2f}x)")


if __name__ == "__main__":
    main()
