"""One subject through the ``classic`` preprocessing pipeline: T1 -> p0..p3, mwp1/mwp2, s*mwp*.

Orchestration only: every computation is a call into :mod:`vbmkit.preprocess` (pure tensor
code) and every file goes through :mod:`vbmkit.io`. The steps, their grids and the output
contract are documented in ``docs/preprocess.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vbmkit import __version__
from vbmkit.allocator import tune_cpu_allocator
from vbmkit.config import PreprocessConfig
from vbmkit.errors import ConfigError
from vbmkit.io.atlas_catalog import resolve_atlas_names
from vbmkit.io.bids import T1Input
from vbmkit.io.records import write_report
from vbmkit.io.weights import deepmriprep_weights_missing
from vbmkit.versions import package_versions as installed_versions
from vbmkit.workflows.preprocess import cat12_outputs, derivatives, qc, steps
from vbmkit.workflows.preprocess.naming import (
    cat12_xml_paths,
    output_paths,
    qc_image_path,
    settings_hash,
)

Progress = Callable[[str], None]


def versions() -> dict[str, str]:
    """Versions of vbmkit and of the libraries whose behaviour shapes the outputs."""
    return {"vbmkit": __version__, "torch": torch.__version__,
            **installed_versions(("numpy", "scipy", "nibabel", "deepbet", "deepmriprep"))}


def check_engine(settings: PreprocessConfig) -> None:
    """Raise :class:`ConfigError` unless the settings name an engine this version can run."""
    if settings.engine == "classic":
        return
    missing = deepmriprep_weights_missing()
    if missing:
        raise ConfigError(
            f"preprocess engine 'deepmriprep': its network weights are not installed ({len(missing)} "
            f"files missing, e.g. {missing[0]}) and vbmkit never downloads them; use engine "
            "'classic' (the supported engine, which needs only deepbet's weights)")
    raise ConfigError("preprocess engine 'deepmriprep': running its networks is not supported by "
                      "this vbmkit version; use engine 'classic' (the supported engine)")


class _Clock:
    """Wall time per step, in seconds."""

    def __init__(self, progress: Progress | None) -> None:
        self.times: dict[str, float] = {}
        self._progress = progress
        self._start = time.perf_counter()

    def step(self, name: str) -> _Step:
        if self._progress is not None:
            self._progress(name)
        return _Step(self, name)

    def total(self) -> float:
        return time.perf_counter() - self._start


class _Step:
    def __init__(self, clock: _Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> _Step:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.clock.times[self.name] = round(time.perf_counter() - self.t0, 3)


def preprocess_subject(t1: T1Input, out: Path, settings: PreprocessConfig, *,
                       device: torch.device | str = "cpu",
                       progress: Progress | None = None) -> dict[str, Any]:
    """Run the classic pipeline on one T1 image and write its outputs and report.

    Parameters
    ----------
    t1 : T1Input
        Name and path of the image.
    out : Path
        Study output folder; files go to ``out/<name>/mri`` and ``out/<name>/report``.
    settings : PreprocessConfig
    device : torch.device or str
        Resolved device (``cpu``, ``cuda``).
    progress : callable, optional
        Called with the name of each step as it starts.

    Returns
    -------
    dict
        The report that was written to ``out/<name>/report/<name>.json``.

    Raises
    ------
    VbmkitError
        For an input that is not a usable 3-D T1 image (the message names the file).
    """
    check_engine(settings)
    tune_cpu_allocator()  # keep freed tensors' memory for reuse: same results, far fewer page faults
    device = torch.device(device)
    paths = output_paths(out, t1.name, settings)
    xml_paths = cat12_xml_paths(out, t1.name, settings)
    if "catroi_xml" in xml_paths:
        resolve_atlas_names(settings.roi_atlases)  # a bad name fails before any work
    clock = _Clock(progress)
    source = str(t1.path)

    with clock.step("load"):
        native = steps.load_t1(t1.path)
    with clock.step("brain_mask"):
        bm = steps.extract_brain(native.data, settings, device=device)
    with clock.step("affine"):
        aff = steps.affine_to_template(native, bm.mask, device=device)
    with clock.step("segment"):
        seg_input = steps.segmentation_input(native, bm.mask, settings)
        seg = steps.segment_native(seg_input, aff.matrix, device=device)
    if settings.deformed_priors:
        with clock.step("segment_deformed_priors"):
            seg = steps.segment_with_deformed_priors(seg_input, seg, aff.matrix, device=device,
                                                     csf_wm=settings.csf_wm_class,
                                                     levels=steps.prior_registration_levels(settings))
    del seg_input
    with clock.step("native_maps"):
        native_maps = steps.to_native(seg, native.grid)
        volumes = steps.native_volumes(native_maps, native.grid)
        steps.write_native(paths, native_maps, native.grid, native.stored_affine)
    with clock.step("quality_rating"):
        rating = qc.quality_rating(native, native_maps[0])
    with clock.step("nonlinear"):
        reg = steps.register_to_shooting_template(seg, aff.matrix, settings, device=device)
    with clock.step("modulate"):
        warped = steps.warp_and_modulate(reg, aff.matrix, native_maps[1:3], native.grid, method=settings.modulation)
    roi = None
    if "catroi_xml" in xml_paths:
        with clock.step("roi_native"):
            roi = cat12_outputs.native_roi_volumes(t1.name, native_maps, native.grid, reg.result.deformation,
                                                   reg.grid, aff.matrix, settings.roi_atlases)
    with clock.step("qc_figure"):
        qc_png = qc.write_qc_figure(qc_image_path(out, t1.name, settings), native, native_maps[0], bm.mask,
                                       warped.mwp[0], title=f"{t1.name}: {qc.rating_title(rating)}")
    del native_maps
    with clock.step("smooth"):
        smoothed = steps.smooth_maps(warped.mwp, settings.fwhm)
    with clock.step("write"):
        steps.write_warped(paths, warped.mwp, smoothed, settings.fwhm)
        if settings.save_deformation:
            steps.write_deformation(paths["y"], reg, aff.matrix)

    quality = {
        "affine_loss": aff.loss,
        **warped.quality,
        "volume_preservation_gm": warped.mwp_volumes_ml["gm"] / max(volumes["gm_ml"], 1e-9),
        "volume_preservation_wm": warped.mwp_volumes_ml["wm"] / max(volumes["wm_ml"], 1e-9),
        "periventricular_gm_ml": steps.periventricular_gm_ml(warped.mwp[0]),
        "brain_mask_ml": float(bm.mask.sum()) * native.grid.voxel_volume_ml,
        "skull_stripped_input": bm.skull_stripped,
    }
    report = {
        "name": t1.name,
        "input": source,
        "engine": settings.engine,
        "settings": settings.model_dump(mode="json"),
        "settings_hash": settings_hash(settings),
        "device": str(device),
        "versions": versions(),
        "volumes_ml": {k[:-3]: v for k, v in volumes.items() if k.endswith("_ml")},
        "volumes_fraction": {k[:-5]: v for k, v in volumes.items() if k.endswith("_frac")},
        "mwp_volumes_ml": warped.mwp_volumes_ml,
        "quality": quality,
        "quality_rating": rating,
        "native_grid": {"shape": list(native.grid.shape),
                        "voxel_size_mm": [float(v) for v in native.grid.voxel_size],
                        "stored_affine": np.asarray(native.stored_affine).tolist()},
        "affine_template_to_subject_mm": np.asarray(aff.matrix).tolist(),
        "segmentation": seg.info,
        "timings_s": {**clock.times, "total": round(clock.total(), 3)},
        "outputs": {k: str(p.relative_to(out)) for k, p in paths.items()},
    }
    if xml_paths:
        volumes_ml = report["volumes_ml"]
        cat12_outputs.write_cat12_files(xml_paths["cat_xml"], xml_paths.get("catroi_xml"), name=t1.name,
                                        source=source, volumes_ml=volumes_ml, roi=roi,
                                        ratings=rating.get("marks"), measures=rating.get("cat12_measures"))
        report["outputs"].update({k: str(p.relative_to(out)) for k, p in xml_paths.items()})
    if qc_png is not None:
        report["outputs"]["qc_png"] = str(qc_png.relative_to(out))
    derivatives.write_derivative_files(paths, out=out, name=t1.name, t1_path=t1.path,
                                       settings_hash=report["settings_hash"])
    write_report(paths["report"], report)  # last: its presence marks the subject as finished
    return report

