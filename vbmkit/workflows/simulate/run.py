"""Write a synthetic cohort (:mod:`vbmkit.simulate.cohort`) as a BIDS-like folder with its truth.

Layout of ``OUT``::

    dataset_description.json
    participants.tsv                  participant_id, age, sex (F/M), group (control/patient),
                                      head_scale, tiv_ml (true native TIV)
    sub-XX/anat/sub-XX_T1w.nii.gz     T1-like images (native grid, voxel size 1.5 mm x head scale)
    truth/                            laid out like a ``vbmkit preprocess`` folder, so the
      sub-XX_T1w/mri/p0sub-XX_T1w.nii.gz      statistics can run on the ground truth:
      sub-XX_T1w/mri/{mwp1,mwp2,s6mwp1}...    native label map; template-space modulated maps
      volumes.csv                     name, gm_ml, wm_ml, csf_ml, tiv_ml (true native volumes)
      effect_age.nii.gz               true GM change per year (template grid)
      effect_group.nii.gz             true GM difference patient - control
      periventricular_band.nii.gz     with --ventricle-widening: the 3 mm band around the lateral
                                      ventricles, where the true GM does not change
      regions.json, parameters.json   the planted regions and the simulation settings

Every file is written atomically; a rerun with the same seed skips subjects already written
(the draws of one subject depend only on the seed and its index).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit.errors import ConfigError
from vbmkit.io.atlas import load_atlas
from vbmkit.io.atomic import atomic_path, write_json
from vbmkit.io.nifti import save_volume
from vbmkit.io.ownership import claim
from vbmkit.io.templates import load_shooting_template, output_grid
from vbmkit.io.ventricles import lateral_ventricles
from vbmkit.preprocess.periventricular import BAND_MM, periventricular_band
from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.simulate.cohort import (
    CohortParameters,
    design_cohort,
    simulate_subject,
    true_effect_maps,
)
from vbmkit.stats.memory import format_bytes

#: LPBA40 regions where GM declines with age (hippocampi, superior frontal gyri) ...
AGE_REGIONS = ("lHip", "rHip", "lSupFroG", "rSupFroG")
#: ... and where patients have less GM (cingulate gyri).
GROUP_REGIONS = ("lCinG", "rCinG")
SMOOTH_FWHM_MM = 6.0


#: Largest write ``vbmkit simulate`` starts without ``--yes`` (decimal bytes).
CONFIRM_BYTES = 5_000_000_000
#: Share of the raw float32 bytes gzip keeps, by file (measured with ``vbmkit simulate --n 4
#: --seed 0`` at 1.5 mm: 0.902, 0.292, 0.325 / 0.323 / 0.339 for mwp1 / mwp2 / effect maps,
#: 0.577; rounded up): the T1 (its noise compresses poorly), the p0 label map, the
#: template-space maps (zero outside the brain) and the smoothed map. A subject takes ~17 MB.
GZIP_SHARE = {"t1": 0.91, "p0": 0.30, "mwp": 0.34, "s6mwp1": 0.58}
NIFTI_HEADER_BYTES = 352
#: Bytes of the small per-subject and per-cohort text files (volumes JSON, TSV row, ...).
TEXT_BYTES_PER_SUBJECT = 400


@dataclass(frozen=True)
class DiskEstimate:
    """What :func:`simulate_cohort` will write.

    Attributes
    ----------
    files : int
        Number of files.
    bytes : int
        Their total size in bytes (gzip shares of :data:`GZIP_SHARE`; raw float32 when
        uncompressed).
    per_subject : int
        Bytes of one subject.
    """

    files: int
    bytes: int
    per_subject: int


def estimate_disk(n: int, *, parameters: CohortParameters | None = None, images: bool = True,
                  compress: bool = True, template_shape: Sequence[int] | None = None) -> DiskEstimate:
    """Files and bytes :func:`simulate_cohort` writes for ``n`` subjects, from the grid shapes.

    Parameters
    ----------
    n : int
        Number of subjects.
    parameters : CohortParameters, optional
        Only ``voxel_size_mm`` matters: the native T1 and p0 grids are the template grid
        resampled to it (``round(s * 1.5 / voxel_size_mm)`` voxels per axis).
    images, compress : bool
        As in :func:`simulate_cohort` (T1 and p0 are always gzipped).
    template_shape : sequence of 3 int, optional
        The template grid (default: read from Template_4_GS, 113 x 137 x 113).

    Returns
    -------
    DiskEstimate

    Notes
    -----
    Every map is float32 (4 bytes a voxel plus a 352-byte header). Per subject: mwp1, mwp2
    and s6mwp1 on the template grid, a volumes JSON, and with ``images`` the T1 and p0 on the
    native grid. Once per cohort: two effect maps and six small text files.
    """
    params = parameters if parameters is not None else CohortParameters()
    if template_shape is None:
        template_shape = output_grid()[0].shape
    template_voxels = int(np.prod(template_shape))
    native_voxels = int(np.prod([round(s * 1.5 / params.voxel_size_mm) for s in template_shape]))

    def nifti(voxels: int, kind: str, gz: bool) -> int:
        share = GZIP_SHARE[kind] if gz else 1.0
        return NIFTI_HEADER_BYTES + int(np.ceil(4 * voxels * share))

    per_subject = 2 * nifti(template_voxels, "mwp", compress) + nifti(template_voxels, "s6mwp1", compress)
    per_subject += TEXT_BYTES_PER_SUBJECT
    files = 4
    if images:
        per_subject += nifti(native_voxels, "t1", True) + nifti(native_voxels, "p0", True)
        files += 2
    fixed = 2 * nifti(template_voxels, "mwp", True) + 6 * TEXT_BYTES_PER_SUBJECT
    return DiskEstimate(files=n * files + 8, bytes=n * per_subject + fixed, per_subject=per_subject)


def check_disk(estimate: DiskEstimate, out: str | os.PathLike, *, n: int, confirmed: bool) -> None:
    """Refuse a write above :data:`CONFIRM_BYTES` unless ``confirmed``, and one larger than the free space.

    Raises
    ------
    ConfigError
        ``simulate --n N: writes about X GB; pass --yes to go ahead``, or the free space of
        the disk holding ``out`` when it is smaller than the estimate (even with ``--yes``).
    """
    size = format_bytes(estimate.bytes)
    if estimate.bytes > CONFIRM_BYTES and not confirmed:
        raise ConfigError(f"simulate --n {n}: writes about {size} ({estimate.files:,} files); "
                          f"expected --yes for more than {format_bytes(CONFIRM_BYTES)}; pass --yes to go ahead")
    existing = Path(out).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if estimate.bytes > free:
        raise ConfigError(f"simulate --n {n}: writes about {size}; only {format_bytes(free)} free on the disk "
                          f"of {out}; lower --n or choose another --out")


def subject_ids(n: int) -> list[str]:
    """``sub-01`` ... (two digits at least, more when n >= 100)."""
    width = max(2, len(str(n)))
    return [f"sub-{i + 1:0{width}d}" for i in range(n)]


def _region_ids(table: pd.DataFrame, names: Sequence[str]) -> list[int]:
    ids = []
    for name in names:
        hit = table.loc[table["abbr"] == name, "region_id"]
        if not len(hit):
            raise ConfigError(f"region {name!r}: expected an LPBA40 abbreviation; "
                              f"known: {', '.join(table['abbr'])}")
        ids.append(int(hit.iloc[0]))
    return ids


def _native_affine(shape: Sequence[int], vox: float, centre_mm: np.ndarray) -> np.ndarray:
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = centre_mm - vox * (np.asarray(shape, dtype=np.float64) - 1) / 2
    return aff


def simulate_cohort(out: str | os.PathLike, *, n: int, seed: int = 0,
                    parameters: CohortParameters | None = None,
                    age_regions: Sequence[str] = AGE_REGIONS, group_regions: Sequence[str] = GROUP_REGIONS,
                    images: bool = True, compress: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Simulate ``n`` subjects into ``out`` (see the module docstring for the layout).

    Parameters
    ----------
    out : path
        Output folder (created).
    n : int
        Number of subjects (>= 4).
    seed : int
        Seed of every draw; the same seed gives the same cohort.
    parameters : CohortParameters, optional
        Effect sizes, head scales, image settings (defaults of :class:`CohortParameters`).
    age_regions, group_regions : sequences of str
        LPBA40 abbreviations of the planted regions.
    images : bool
        Also make the T1 images (``sub-XX/anat``) and native truth ``p0``; without them only
        ``truth/`` and ``participants.tsv`` are written (fast: for statistics-only demos).
    compress : bool
        Write ``truth/`` maps as ``.nii.gz`` (small) or ``.nii`` (about 7 MB each, but written
        several times faster; the demo uses it).
    progress : callable, optional
        Called with each subject ID once it is written or found complete.

    Returns
    -------
    dict
        ``n``, ``seed``, ``subjects`` (IDs), ``written`` (IDs simulated now), ``skipped``.
    """

    if n < 4:
        raise ConfigError(f"--n: expected at least 4 subjects; got {n}")
    params = parameters if parameters is not None else CohortParameters()
    out = Path(out)
    with claim(out, command="simulate") as owned:
        owned.register("truth/", "dataset_description.json", "participants.tsv", *(f"{s}/" for s in subject_ids(n)))
        result = _write_cohort(out, n=n, seed=seed, params=params, age_regions=age_regions,
                               group_regions=group_regions, images=images, compress=compress, progress=progress)
        owned.finish(keep=owned.previous["files"] if owned.previous else ())
    return result


def _write_cohort(out: Path, *, n: int, seed: int, params: CohortParameters, age_regions: Sequence[str],
                  group_regions: Sequence[str], images: bool, compress: bool,
                  progress: Callable[[str], None] | None) -> dict:
    """The work of :func:`simulate_cohort` in its claimed folder (finished subjects are skipped)."""
    template = load_shooting_template()
    atlas = load_atlas("lpba40", grid=template.grid)
    age_ids = _region_ids(atlas.table, age_regions)
    group_ids = _region_ids(atlas.table, group_regions)
    widening = params.ventricle_widening_mm_per_year > 0
    ventricles = lateral_ventricles() if widening else None
    design = design_cohort(template.data, atlas.labels, n=n, generator=torch.Generator().manual_seed(seed),
                           age_regions=age_ids, group_regions=group_ids, parameters=params, ventricles=ventricles)
    ids = subject_ids(n)
    truth = out / "truth"
    grid, stored = template.grid, template.stored_affine
    centre = grid.voxel_to_world((np.asarray(grid.shape) - 1) / 2)

    effects = true_effect_maps(design)
    for name, emap in effects.items():
        save_volume(truth / f"effect_{name}.nii.gz", emap, grid.affine, orientation_of=stored,
                    description=f"vbmkit simulate: true {name} effect on GM")
    if widening:  # where the truth has no GM change but the ventricle wall moves
        band = periventricular_band(ventricles, tuple(grid.voxel_size), width_mm=BAND_MM)
        save_volume(truth / "periventricular_band.nii.gz", band.float(), grid.affine, orientation_of=stored,
                    description=f"vbmkit simulate: {BAND_MM:g} mm band around the lateral ventricles")
    write_json(truth / "regions.json", {"atlas": "lpba40", "age": list(age_regions), "age_ids": age_ids,
                                        "group": list(group_regions), "group_ids": group_ids})
    write_json(truth / "parameters.json", {"n": n, "seed": seed, "images": images, **asdict(params)})
    write_json(out / "dataset_description.json", {"Name": f"vbmkit simulated cohort (seed {seed})",
                                                  "BIDSVersion": "1.8.0", "DatasetType": "raw"})


    volumes, written, skipped = [], [], []
    for i, sid in enumerate(ids):
        name = f"{sid}_T1w"
        mri = truth / name / "mri"
        t1_path = out / sid / "anat" / f"{name}.nii.gz"
        vol_path = mri / f".volumes_{name}.json"
        ext = ".nii.gz" if compress else ".nii"
        paths = [mri / f"mwp1{name}{ext}", mri / f"mwp2{name}{ext}", mri / f"s6mwp1{name}{ext}", vol_path]
        if images:
            paths += [t1_path, mri / f"p0{name}.nii.gz"]
        if all(p.is_file() for p in paths):
            volumes.append({"name": name, **json.loads(vol_path.read_text(encoding="utf-8"))})
            skipped.append(sid)
        else:
            subj = simulate_subject(design, i, generator=torch.Generator().manual_seed(seed * 1_000_003 + i + 1),
                                    images=images)
            if subj.t1 is not None and subj.tissue is not None:
                aff = _native_affine(subj.t1.shape, subj.voxel_size_mm, centre)
                save_volume(t1_path, subj.t1, aff, description="vbmkit simulate T1w")
                p0 = subj.tissue[2] * 1 + subj.tissue[0] * 2 + subj.tissue[1] * 3
                save_volume(mri / f"p0{name}.nii.gz", p0, aff, description="vbmkit simulate: true p0")
            for k, label in ((0, "mwp1"), (1, "mwp2")):
                save_volume(mri / f"{label}{name}{ext}", subj.modulated[k], grid.affine,
                            orientation_of=stored, description=f"vbmkit simulate: true {label}")
            smoothed = smooth_fwhm(subj.modulated[0][None, None], SMOOTH_FWHM_MM, tuple(grid.voxel_size))[0, 0]
            save_volume(mri / f"s6mwp1{name}{ext}", smoothed, grid.affine, orientation_of=stored,
                        description="vbmkit simulate: true s6mwp1")
            write_json(vol_path, subj.volumes_ml)  # last: marks the subject complete
            volumes.append({"name": name, **subj.volumes_ml})
            written.append(sid)
        if progress is not None:
            progress(sid)

    vols = pd.DataFrame(volumes)
    participants = pd.DataFrame({
        "participant_id": ids,
        "age": np.round(design.age.numpy(), 1),
        "sex": design.sex,
        "group": design.group,
        "head_scale": np.round(design.head_scale.numpy(), 4),
        "tiv_ml": np.round(vols["tiv_ml"].to_numpy(), 2),
    })
    with atomic_path(out / "participants.tsv") as tmp:
        participants.to_csv(tmp, sep="\t", index=False)
    with atomic_path(truth / "volumes.csv") as tmp:
        vols.to_csv(tmp, index=False)
    return {"n": n, "seed": seed, "out": str(out), "subjects": ids, "written": written, "skipped": skipped}
