"""Voxel chunking to a memory budget, and streaming of host data to an accelerator.

The GLM engines read the data matrix Y (N subjects x V voxels) once, a block of voxel
columns at a time. The block width is chosen so that the temporaries of one block fit in
``memory_bytes``. When Y lives in host memory and the computation on a CUDA device, each
block is copied into one of two pinned staging buffers and sent asynchronously, so the copy
of block i+1 overlaps the computation on block i.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from vbmkit.errors import ConfigError

#: Upper bound of the default budget on the CPU: larger blocks bring no speed-up.
CPU_DEFAULT_CAP = 1 << 30
#: Fraction of the free memory used by default.
FREE_FRACTION = 0.25
#: Size of each of the two pinned staging buffers when streaming host data to CUDA.
STAGING_BYTES = 256 << 20
#: Widest CPU block: keeps a block's (K P, width) GEMM output within a typical L3 cache.
CPU_MAX_WIDTH = 8192


def default_memory_bytes(device: torch.device) -> int:
    """Default working-memory budget of one voxel block, in bytes.

    CUDA: half of the free device memory (``torch.cuda.mem_get_info``). CPU: a quarter of
    the available RAM, at most 1 GiB.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # sysconf names are platform dependent
        available = 4 << 30
    return int(min(CPU_DEFAULT_CAP, FREE_FRACTION * available))


def chunk_size(bytes_per_voxel: int, n_voxels: int, *, memory_bytes: int | None, device: torch.device,
               fixed_bytes: int = 0, align: int = 256) -> int:
    """Number of voxels per block so that ``fixed + width * bytes_per_voxel <= budget``.

    Parameters
    ----------
    bytes_per_voxel : int
        Memory of all temporaries per voxel of a block.
    n_voxels : int
    memory_bytes : int or None
        Budget; None picks :func:`default_memory_bytes`.
    device : torch.device
    fixed_bytes : int
        Memory that does not scale with the block (e.g. the weight matrices).
    align : int
        Round widths down to a multiple of this (GEMM efficiency), when possible.

    Raises
    ------
    ConfigError
        When the budget cannot hold even one voxel.
    """
    budget = memory_bytes if memory_bytes is not None else default_memory_bytes(device)
    room = budget - fixed_bytes
    if room < bytes_per_voxel:
        raise ConfigError(
            f"memory_bytes: expected at least {fixed_bytes + bytes_per_voxel} bytes for one "
            f"voxel block; got {budget}"
        )
    width = int(room // bytes_per_voxel)
    if device.type == "cpu":
        width = min(width, CPU_MAX_WIDTH)
    if width >= align:
        width -= width % align
    return max(1, min(width, n_voxels))


def iter_voxel_blocks(Y: torch.Tensor, width: int, device: torch.device) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(voxel slice, block)`` with ``block`` a float32 (N, width) tensor on ``device``.

    Parameters
    ----------
    Y : torch.Tensor, shape (N, V)
        Data, float32 (other float types are converted per block), on any device.
    width : int
        Voxels per block.
    device : torch.device
        Where the blocks are needed.

    Notes
    -----
    On the same device the block is a view (no copy). From host to CUDA the block goes
    through two alternating pinned buffers; an event per buffer makes sure the previous
    asynchronous copy out of a buffer finished before it is overwritten. The yielded block
    must not be modified in place by the caller (it may be a view of Y).
    """
    n, v = Y.shape
    if Y.device == device or device.type != "cuda":
        source = Y if Y.device == device else None
        for start in range(0, v, width):
            sl = slice(start, min(start + width, v))
            block = source[:, sl] if source is not None else Y[:, sl].to(device)
            yield sl, block if block.dtype == torch.float32 else block.float()
        return
    # moderate staging buffers: pinning is slow, and small blocks overlap copy and compute
    width = max(1, min(width, STAGING_BYTES // (4 * n)))
    pinned = [torch.empty(n * width, dtype=torch.float32, pin_memory=True) for _ in range(2)]
    events: list[torch.cuda.Event | None] = [None, None]
    for i, start in enumerate(range(0, v, width)):
        sl = slice(start, min(start + width, v))
        w = sl.stop - sl.start
        slot = i % 2
        if events[slot] is not None:
            events[slot].synchronize()
        staging = pinned[slot][: n * w].view(n, w)  # contiguous, also for the last block
        staging.copy_(Y[:, sl])
        block = torch.empty((n, w), dtype=torch.float32, device=device)
        block.copy_(staging, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        events[slot] = event
        yield sl, block
