"""Cerebellar share of GM: FreeSurfer vs vbmkit vs Template_4_GS (issue 15, must-show 1).

``roi_realdata.py`` finds the cerebellar atlas (suit) holding more of each subject's GM than of
the template's own GM, and the cortical atlases (julichbrain, Schaefer) correspondingly less
(r = -0.87 over subjects). This script asks whether that is GM put in the wrong place by the
registration, or a difference in how much of the cerebellum is called GM:

1. FreeSurfer reference (``../shared/data/segref/niivue_fs_*``): FreeSurfer's cerebellar cortex
   (aseg 8, 47) as a share of its GM; vbmkit's native GM inside FreeSurfer's cerebellum (aseg 7,
   8, 46, 47) as a share of vbmkit's native GM; and, after ``vbmkit preprocess``, vbmkit's
   modulated GM inside suit as a share of all modulated GM (the figure ``roi_realdata.py``
   compares with the template). If the last two agree, registration and modulation carry the
   subject's own cerebellar share into template space unchanged.
2. Template_4_GS: suit's share of the template GM, and GM / (GM + WM) inside suit.
3. A preprocess folder (default: the 20 ds002748 subjects, ``out/ds002748/preprocess``): per
   subject, suit's share of mwp1 and GM / (GM + WM) inside suit (median and range), and the
   share of the GM outside suit that julichbrain and Schaefer-100 hold, against the template's
   (the 2-point criterion with the cerebellum set aside).

Usage::

    .venv/bin/python benchmarks/cerebellum_share.py [--prep out/ds002748/preprocess] [--fs-out out/fs_norm]

The FreeSurfer subject is preprocessed into ``--fs-out`` (gitignored ``out/``) once (about two
minutes on two cores); a rerun reuses it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from segment_accuracy import SEGREF, fs_tissue  # noqa: E402

from vbmkit.io.atlas import load_atlas  # noqa: E402
from vbmkit.io.nifti import load_volume  # noqa: E402
from vbmkit.io.templates import load_shooting_template  # noqa: E402
from vbmkit.space import resample  # noqa: E402

FS_CEREBELLUM_CORTEX = [8, 47]
FS_CEREBELLUM = [7, 8, 46, 47]
#: atlases of the cerebral cortex that fall short of the 2-point criterion in roi_realdata.py
CORTICAL = ("julichbrain", "schaefer100")


def template_figures(suit: np.ndarray, cortical: dict[str, np.ndarray]) -> list[float]:
    """:func:`modulated_figures` of Template_4_GS's own GM and WM."""
    t = load_shooting_template().data.numpy()
    out = [float(t[0][suit].sum() / t[0].sum()), float(t[0][suit].sum() / (t[0][suit] + t[1][suit]).sum())]
    return out + [float(t[0][m & ~suit].sum() / t[0][~suit].sum()) for m in cortical.values()]


def modulated_figures(mri: Path, suit: np.ndarray, cortical: dict[str, np.ndarray] | None = None) -> list[float]:
    """Suit's share of mwp1 and GM / (GM + WM) inside suit of one subject's ``mri`` folder, then
    each ``cortical`` atlas' share of the GM outside suit."""
    gm = load_volume(next(mri.glob("mwp1*.nii*"))).data.numpy()
    wm = load_volume(next(mri.glob("mwp2*.nii*"))).data.numpy()
    out = [float(gm[suit].sum() / gm.sum()), float(gm[suit].sum() / (gm[suit] + wm[suit]).sum())]
    cerebrum = gm[~suit].sum()
    return out + [float(gm[m & ~suit].sum() / cerebrum) for m in (cortical or {}).values()]


def freesurfer_reference(fs_out: Path, suit: np.ndarray) -> None:
    from vbmkit.workflows.preprocess import run_preprocess

    norm = SEGREF / "niivue_fs_norm.mgz"
    mri = fs_out / "niivue_fs_norm" / "mri"
    if not any(mri.glob("mwp1*.nii*")):
        print(f"preprocessing {norm.name} into {fs_out} ...", flush=True)
        run_preprocess([norm], fs_out, progress=False, device="cpu")
    labels = load_volume(SEGREF / "niivue_fs_aparc.a2009s+aseg.mgz")
    aseg = labels.data.numpy().round().astype(np.int64)
    p1 = load_volume(next(mri.glob("p1*.nii*")))
    ours = resample(p1.data[None, None].float(), p1.grid, labels.grid)[0, 0].numpy()  # onto FreeSurfer's grid
    cerebellum = np.isin(aseg, FS_CEREBELLUM)
    print("FreeSurfer reference subject (niivue_fs):")
    for ambiguous in (False, True):
        gm = fs_tissue(aseg, ambiguous_as_gm=ambiguous) == 2
        share = np.isin(aseg, FS_CEREBELLUM_CORTEX).sum() / gm.sum()
        label = "thalamus, pallidum, ventral DC as GM" if ambiguous else "thalamus, pallidum, ventral DC excluded"
        print(f"  FreeSurfer: cerebellar cortex / all GM {100 * share:.2f} % ({label})")
    cortex = np.isin(aseg, FS_CEREBELLUM_CORTEX).sum()
    print(f"  FreeSurfer: cerebellar cortex / cerebellum {cortex / cerebellum.sum():.3f}")
    print(f"  vbmkit native p1: GM inside FreeSurfer's cerebellum / all GM {100 * ours[cerebellum].sum() / ours.sum():.2f} %")
    share, frac = modulated_figures(mri, suit)[:2]
    print(f"  vbmkit mwp1 (template space): GM inside suit / all GM {100 * share:.2f} %; GM / (GM + WM) inside suit {frac:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prep", type=Path, default=REPO / "out" / "ds002748" / "preprocess",
                    help="a vbmkit preprocess output folder (skipped when absent)")
    ap.add_argument("--fs-out", type=Path, default=REPO / "out" / "fs_norm",
                    help="where the FreeSurfer subject's preprocessing is written or reused")
    args = ap.parse_args(argv)
    suit = np.asarray(load_atlas("suit").labels) > 0
    cortical = {name: np.asarray(load_atlas(name).labels) > 0 for name in CORTICAL}
    t_share, t_frac, *t_cortical = template_figures(suit, cortical)
    if SEGREF.is_dir():
        freesurfer_reference(args.fs_out, suit)
    else:
        print(f"{SEGREF} not found: FreeSurfer reference skipped")
    print(f"Template_4_GS: GM inside suit / all GM {100 * t_share:.2f} %; GM / (GM + WM) inside suit {t_frac:.3f}")
    folders = sorted(p for p in args.prep.glob("*/mri") if any(p.glob("mwp1*.nii*"))) if args.prep.is_dir() else []
    if not folders:
        print(f"no subjects with mwp1 under {args.prep}: cohort figures skipped")
        return 0
    rows = np.array([modulated_figures(p, suit, cortical) for p in folders])
    share, frac = rows[:, 0] * 100, rows[:, 1]
    print(f"{len(folders)} subjects of {args.prep.relative_to(REPO) if args.prep.is_relative_to(REPO) else args.prep}:")
    print(f"  GM inside suit / all GM: median {np.median(share):.2f} % (range {share.min():.2f}-{share.max():.2f}); "
          f"template {100 * t_share:.2f} %")
    print(f"  GM / (GM + WM) inside suit: median {np.median(frac):.3f} (range {frac.min():.3f}-{frac.max():.3f}); "
          f"template {t_frac:.3f}")
    for j, name in enumerate(CORTICAL):
        diff = 100 * (rows[:, 2 + j] - t_cortical[j])
        print(f"  {name}: share of the GM outside suit minus the template's, points: median {np.median(diff):+.2f} "
              f"(range {diff.min():+.2f} .. {diff.max():+.2f}); within 2 points: {int((np.abs(diff) <= 2).sum())}"
              f"/{len(diff)} (template {100 * t_cortical[j]:.2f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
