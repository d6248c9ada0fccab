"""Bounds of a GLM run, checked before any image is read: subsample and permutation counts
against the memory they need (:mod:`vbmkit.stats.memory`) and against plain caps.

Limits (``docs/glm.md``, "Limits"):

- memory: the draws, the permutation matrix, the null distributions and the result maps
  (host RAM), plus one voxel block under the budget (``--memory-gb``, default a share of the
  free memory), must fit the memory available now (``MemAvailable``; the free memory of a
  CUDA device for its blocks); the budget must hold at least one voxel block;
- counts: at most :data:`MAX_SUBSAMPLES` draws and :data:`MAX_PERMUTATIONS` permutations
  (after capping at N!, see :func:`vbmkit.stats.permutation.effective_permutations`), where
  memory would allow more: beyond these the run takes hours and adds nothing (the median of
  100,000 draws is stable to far below the noise; 10^6 permutations resolve p to 10^-6).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vbmkit.config import GlmConfig
from vbmkit.device import available_memory_bytes, resolve_device
from vbmkit.errors import ConfigError
from vbmkit.formula.design import Design
from vbmkit.io.nifti import load_grid
from vbmkit.stats import chunking
from vbmkit.stats.memory import format_bytes, glm_memory, map_permutation_parts
from vbmkit.workflows.glm.outputs import uses_map_engine

#: Most subsample draws a run may ask for.
MAX_SUBSAMPLES = 100_000
#: Most permutations a run may run (after capping at N!).
MAX_PERMUTATIONS = 1_000_000


def check_glm_resources(design: Design, contrasts: Sequence, settings: GlmConfig,
                        paths: Sequence[str | os.PathLike], *, device: str = "auto") -> None:
    """Refuse subsample / permutation counts that cannot fit in memory or exceed the caps.

    Parameters
    ----------
    design : vbmkit.formula.design.Design
        The design (its X gives N and P).
    contrasts : sequence of Contrast
        Parsed contrasts (their rows count in the estimate).
    settings : GlmConfig
        ``subsamples``, ``permutations``, ``memory_gb`` and ``device`` are read.
    paths : sequence of path
        The matched maps; only the first one's header is read (its grid bounds V).
    device : str
        As in :func:`vbmkit.workflows.glm.run_glm` (``auto`` defers to ``settings.device``).

    Raises
    ------
    ConfigError
        ``--subsamples K: needs about X GB for ...; Y GB available; lower ...``, the same for
        ``--permutations`` and ``--memory-gb``, or a count above its cap.
    """
    k, requested = int(settings.subsamples), int(settings.permutations)
    if (k == 0 and requested == 0) or not paths:
        return
    n, p = design.X.shape
    ranks = [int(np.atleast_2d(c.matrix).shape[0]) for c in contrasts]
    n_voxels = int(np.prod(load_grid(Path(paths[0])).shape))  # header only: an upper bound of V
    dev = resolve_device(device if device != "auto" else settings.device)
    mem = glm_memory(n, p, ranks, subsamples=k, permutations=requested, n_voxels=n_voxels)
    if mem.subsample_host >= mem.permutation_host:
        option, lower, what = f"--subsamples {k}", "--subsamples", "the subsample draws and medians"
    else:
        option, lower, what = (f"--permutations {requested}", "--permutations",
                               "the permutations and their null distributions")
    given = settings.memory_gb
    budget = int(given * 1e9) if given is not None else chunking.default_memory_bytes(dev)
    block = max(mem.block_minimum,
                mem.block_bytes(budget, n_voxels, max_width=chunking.CPU_MAX_WIDTH if dev.type == "cpu" else None))
    engines = mem.subsample_host + mem.permutation_host
    host = engines + mem.outputs + (block if dev.type == "cpu" else 0)
    free = available_memory_bytes("cpu")
    if free is not None and host > free:
        if given is not None and block > engines:
            raise ConfigError(f"--memory-gb {given:g}: the voxel blocks would take about {format_bytes(block)}; "
                              f"{format_bytes(free)} available; lower --memory-gb")
        raise ConfigError(f"{option}: needs about {format_bytes(host)} for {what}; {format_bytes(free)} "
                          f"available; lower {lower} or --memory-gb")
    if budget < mem.block_minimum:
        if given is not None:
            raise ConfigError(f"--memory-gb {given:g}: expected at least {format_bytes(mem.block_minimum)} for one "
                              f"voxel block of {option}; raise --memory-gb or lower {lower}")
        raise ConfigError(f"{option}: one voxel block needs about {format_bytes(mem.block_minimum)}; the default "
                          f"block budget is {format_bytes(budget)} (a share of the free memory); "
                          f"lower {lower} or raise --memory-gb")
    if dev.type == "cuda":
        free_dev = available_memory_bytes(dev)
        if free_dev is not None and block > free_dev:
            raise ConfigError(f"--memory-gb {given if given is not None else 'default'}: a voxel block on {dev} "
                              f"needs about {format_bytes(block)}; {format_bytes(free_dev)} free there; "
                              f"lower --memory-gb or {lower}")
    if uses_map_engine(settings, contrasts, design.X, design.columns):
        _check_map_engine(n, p, ranks, mem.n_permutations, n_voxels, free=free, budget=budget, given=given,
                          requested=requested)
    if k > MAX_SUBSAMPLES:
        raise ConfigError(f"--subsamples {k}: expected at most {MAX_SUBSAMPLES:,} draws (the median t is stable "
                          f"long before; the paper uses 100)")
    if mem.n_permutations > MAX_PERMUTATIONS:
        raise ConfigError(f"--permutations {requested}: expected at most {MAX_PERMUTATIONS:,} (p_FWE to 1e-6); "
                          f"lower --permutations")


def _check_map_engine(n: int, p: int, ranks: Sequence[int], j: int, n_voxels: int, *, free: int | None, budget: int,
                      given: float | None, requested: int) -> None:
    """The whole-map engine (TFCE, cluster FWE): its host peak, outputs and one permutation per block."""
    host, fixed, per_permutation, outputs = map_permutation_parts(n, p, ranks, j, n_voxels, n_voxels)
    if free is not None and host + outputs > free:
        raise ConfigError(f"--permutations {requested}: needs about {format_bytes(host + outputs)} for the "
                          f"whole-map permutations (TFCE, clusters); {format_bytes(free)} available; "
                          f"lower --permutations")
    if budget < fixed + per_permutation:
        raise ConfigError(f"--memory-gb {given if given is not None else 'default'}: expected at least "
                          f"{format_bytes(fixed + per_permutation)} for one whole-map permutation block (TFCE, "
                          f"clusters); raise --memory-gb")
