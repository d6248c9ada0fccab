"""Regenerate ``atlases/<name>/`` from the deepmriprep wheel: the committed record of how.

Usage::

    .venv/bin/python scripts/make_atlas.py            # lpba40
    .venv/bin/python scripts/make_atlas.py hammers    # any atlas of the wheel

Reads ``deepmriprep/data/templates/<name>.nii.gz`` (CAT12's atlas, 1 mm, 161 x 197 x 161, LAS)
and ``<name>.csv``, resamples the labels ONCE by nearest neighbour (rounding half up in source
voxel coordinates, see :func:`vbmkit.io.atlas.resample_labels`) onto vbmkit's output grid
(Template_4_GS: 113 x 137 x 113, 1.5 mm) and writes

- ``atlases/<name>/<name>.nii.gz``: uint8/uint16 labels stored with Template_4_GS's stored
  (LAS) affine, so the file lies voxel for voxel on vbmkit's mwp1/mwp2 outputs;
- ``atlases/<name>/<name>_labels.csv``: region_id, abbr, name, hemisphere, vgm, vwm, vcsf.

It prints the voxels per region before and after (in mL) so a reader can see what the
resampling did.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vbmkit.io.atlas import read_label_table, resample_labels  # noqa: E402
from vbmkit.io.atomic import atomic_path  # noqa: E402
from vbmkit.io.nifti import save_volume  # noqa: E402
from vbmkit.io.resources import deepmriprep_template_dir  # noqa: E402
from vbmkit.io.templates import output_grid  # noqa: E402
from vbmkit.space import Grid  # noqa: E402


def main(name: str = "lpba40") -> None:
    src_dir = deepmriprep_template_dir()
    img = nib.as_closest_canonical(nib.load(str(src_dir / f"{name}.nii.gz")))
    labels = np.rint(np.asanyarray(img.dataobj)).astype(np.int64)
    source = Grid(labels.shape, img.affine)
    table = read_label_table(src_dir / f"{name}.csv")
    target, stored_affine = output_grid()
    out = resample_labels(labels, source, target)

    dest = REPO / "atlases" / name
    dtype = np.uint8 if out.max() < 256 else np.uint16
    save_volume(dest / f"{name}.nii.gz", out, target.affine, dtype=dtype,
                description=f"{name} labels, nearest-neighbour onto Template_4_GS 1.5 mm",
                orientation_of=stored_affine)
    with atomic_path(dest / f"{name}_labels.csv") as tmp:
        table.astype({c: int for c in ("vgm", "vwm", "vcsf")}).to_csv(tmp, index=False)

    v_src, v_tgt = source.voxel_volume_ml, target.voxel_volume_ml
    ids = table["region_id"].to_numpy()
    n_src = np.bincount(labels.ravel(), minlength=ids.max() + 1)[ids] * v_src
    n_tgt = np.bincount(out.ravel(), minlength=ids.max() + 1)[ids] * v_tgt
    missing = set(ids.tolist()) - set(np.unique(out).tolist())
    print(f"{name}: {source.shape} {source.voxel_size} mm -> {target.shape} {target.voxel_size} mm")
    print(f"regions: {len(ids)}; missing after resampling: {sorted(missing) or 'none'}")
    print(f"labelled volume: {n_src.sum():.1f} mL (1 mm) -> {n_tgt.sum():.1f} mL (1.5 mm); "
          f"largest relative change of one region: {np.max(np.abs(n_tgt / n_src - 1)):.3%}")
    print(f"wrote {dest / f'{name}.nii.gz'} and {dest / f'{name}_labels.csv'}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
