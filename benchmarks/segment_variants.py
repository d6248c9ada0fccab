"""Issue 13, item 5: what CAT12 adds before AMAP, tried on the segmentation that ``vbmkit
preprocess`` writes, scored by ``segment_accuracy.py``'s real-anatomy Dice (FSL FAST on
``nii2mesh_bet_T1``, FreeSurfer on ``niivue_fs_norm``; the ``pipeline`` variant: deepbet mask,
affine, segmentation with deformed priors).

Variants (one per run; the package is patched in this process only, nothing is kept):

- ``base``: the pipeline as it is (the control, measured in the same harness);
- ``nlm``: non-local-means denoising of the segmentation input first (blockwise NLM in the
  spirit of Coupe et al. 2008 and CAT12's SANLM, but with one global noise level: 3x3x3
  patches, a (2r+1)^3 search window, weights ``exp(-d2 / (2 beta sigma^2))`` with ``d2`` the
  mean squared patch difference, the centre weighted like its best neighbour, sigma from the
  MAD of the image minus its 3x3x3 mean inside the brain);
- ``bias``: a smaller bias-field FWHM (``--bias-fwhm``, default 25 mm instead of 40 mm), a
  stand-in for CAT12's local adaptive tissue means (intensity drifts on a shorter scale).

    .venv/bin/python benchmarks/segment_variants.py base
    .venv/bin/python benchmarks/segment_variants.py nlm [--radius 2] [--beta 1.0]
    .venv/bin/python benchmarks/segment_variants.py bias [--bias-fwhm 25]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import segment_accuracy  # noqa: E402  (the harness beside this file)


def _box3(x: torch.Tensor) -> torch.Tensor:
    """Mean over the 3x3x3 neighbourhood (edges replicated) of a (X, Y, Z) tensor."""
    return F.avg_pool3d(F.pad(x[None, None], (1,) * 6, mode="replicate"), 3, stride=1)[0, 0]


def noise_sigma(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Global noise SD: MAD of ``image - box3(image)`` in ``mask``, scaled for Gaussian noise."""
    r = (image - _box3(image))[mask]
    return float(1.4826 * (r - r.median()).abs().median() / (26 / 27) ** 0.5)


def nlm(image: torch.Tensor, mask: torch.Tensor, *, radius: int = 2, beta: float = 1.0) -> tuple[torch.Tensor, float]:
    """Non-local means of ``image`` (X, Y, Z) inside ``mask``; returns (denoised, sigma)."""
    sigma = noise_sigma(image, mask)
    pad = radius
    padded = F.pad(image[None, None], (pad,) * 6, mode="replicate")[0, 0]
    nx, ny, nz = image.shape
    acc, wsum, wmax = torch.zeros_like(image), torch.zeros_like(image), torch.zeros_like(image)
    h2 = 2.0 * beta * sigma * sigma
    offsets = range(-radius, radius + 1)
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                if dx == dy == dz == 0:
                    continue
                shifted = padded[pad + dx:pad + dx + nx, pad + dy:pad + dy + ny, pad + dz:pad + dz + nz]
                w = torch.exp(-_box3((image - shifted) ** 2) / h2)
                acc += w * shifted
                wsum += w
                wmax = torch.maximum(wmax, w)
    out = (acc + wmax * image) / (wsum + wmax)
    return torch.where(mask, out, image), sigma


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", choices=("base", "nlm", "bias"))
    ap.add_argument("--radius", type=int, default=2, help="nlm: search radius in voxels")
    ap.add_argument("--beta", type=float, default=1.0, help="nlm: smoothing strength")
    ap.add_argument("--bias-fwhm", type=float, default=25.0, help="bias: FWHM in mm (pipeline: 40)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from vbmkit.preprocess.segment import segment
    from vbmkit.workflows.preprocess import steps

    if args.variant == "nlm":
        original = steps.segmentation_input

        def denoised_input(native, mask, settings):
            inp = original(native, mask, settings)
            t0 = time.perf_counter()
            image, sigma = nlm(inp.image.float(), inp.mask.bool(), radius=args.radius, beta=args.beta)
            print(f"  nlm: sigma {sigma:.4f} (brain 95th percentile = 1), {time.perf_counter() - t0:.1f} s", flush=True)
            return type(inp)(image=image, mask=inp.mask, grid=inp.grid)

        steps.segmentation_input = denoised_input
    elif args.variant == "bias":
        steps.segment = functools.partial(segment, bias_fwhm_mm=args.bias_fwhm)
    print(f"variant {args.variant}: radius {args.radius}, beta {args.beta}" if args.variant == "nlm"
          else f"variant {args.variant}" + (f": bias FWHM {args.bias_fwhm} mm" if args.variant == "bias" else ""),
          flush=True)
    segment_accuracy.run_real("cpu", ["pipeline"])


if __name__ == "__main__":
    main()
