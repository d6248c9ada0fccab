"""One subject through the ``classic`` preprocessing pipeline: T1 -> p0..p3, mwp1/mwp2, s*mwp*.

Orchestration only: every computation is a call into :mod:`vbmkit.preprocess` (pure tensor
code) and every file goes through :mod:`vbmkit.io`. The steps, their grids and the output
contract are documented in ``docs/preprocess.md``.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vbmkit import __version__
from vbmkit.config import PreprocessConfig
from vbmkit.errors import ConfigError
from vbmkit.io.bids import T1Input
from vbmkit.io.records import write_report
from vbmkit.io.weights import deepmriprep_weights_missing
from vbmkit.workflows.preprocess import steps
from vbmkit.workflows.preprocess.naming import output_paths, settings_hash

Progress = Callable[[str], None]


def versions() -> dict[str, str]:
    """Versions of vbmkit and of the libraries whose behaviour shapes the outputs."""
    out = {"vbmkit": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("numpy", "scipy", "nibabel", "deepbet", "deepmriprep"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


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
    device = torch.device(device)
    paths = output_paths(out, t1.name, settings)
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
            seg = steps.segment_with_deformed_priors(seg_input, seg, aff.matrix, device=device)
    del seg_input
    with clock.step("native_maps"):
        native_maps = steps.to_native(seg, native.grid)
        volumes = steps.native_volumes(native_maps, native.grid)
        steps.write_native(paths, native_maps, native.grid, native.stored_affine)
    with clock.step("nonlinear"):
        reg = steps.register_to_shooting_template(seg, aff.matrix, settings, device=device)
    with clock.step("modulate"):
        warped = steps.warp_and_modulate(reg, aff.matrix, native_maps[1:3], native.grid)
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
        "native_grid": {"shape": list(native.grid.shape),
                        "voxel_size_mm": [float(v) for v in native.grid.voxel_size],
                        "stored_affine": np.asarray(native.stored_affine).tolist()},
        "affine_template_to_subject_mm": np.asarray(aff.matrix).tolist(),
        "segmentation": seg.info,
        "timings_s": {**clock.times, "total": round(clock.total(), 3)},
        "outputs": {k: str(p.relative_to(out)) for k, p in paths.items()},
    }
    write_report(paths["report"], report)  # last: its presence marks the subject as finished
    return report

