"""``grid_sample`` that uses every CPU thread on a single volume.

PyTorch's CPU source for 5-D ``grid_sample`` (forward and backward) parallelises over the items of
a batch, and one volume is the usual case here. Measured with torch 2.13 on 2 threads
(``benchmarks/sampling_speed.py``), the slabs below gain 1.12x per call and 1.18x on a whole
variational registration. :func:`grid_sample` cuts the output grid of a single
volume into as many slabs along its first spatial axis as there are threads, samples them as one
batch (the input is shared; the grid too, unless its gradient is wanted) and puts the slabs back
together. Every output voxel is
computed by the same arithmetic as in one call, so the result is identical to
``torch.nn.functional.grid_sample``; on CUDA, for batches and for small grids it is that call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Output voxels below which a single call is kept (splitting costs a copy of the output).
MIN_SPLIT_VOXELS = 1 << 15


def grid_sample(input: torch.Tensor, grid: torch.Tensor, *, mode: str = "bilinear",
                padding_mode: str = "zeros", align_corners: bool = True) -> torch.Tensor:
    """``torch.nn.functional.grid_sample`` of a (1, C, D, H, W) volume with all CPU threads.

    Parameters
    ----------
    input : torch.Tensor
        (N, C, D, H, W) values (or a 4-D batch of images, passed through unchanged).
    grid : torch.Tensor
        (N, D', H', W', 3) sampling positions, normalised to [-1, 1] (x, y, z order of
        ``grid_sample``).
    mode, padding_mode, align_corners
        As ``torch.nn.functional.grid_sample``.

    Returns
    -------
    torch.Tensor
        (N, C, D', H', W'), equal to ``F.grid_sample(input, grid, ...)``; differentiable.
    """
    threads = torch.get_num_threads()
    depth = grid.shape[1] if grid.ndim == 5 else 0
    if (input.device.type != "cpu" or input.ndim != 5 or grid.ndim != 5 or input.shape[0] != 1
            or grid.shape[0] != 1 or threads < 2 or depth < 2 or grid[0, ..., 0].numel() < MIN_SPLIT_VOXELS):
        return F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    k = min(threads, depth)
    if grid.requires_grad and torch.is_grad_enabled():
        # autograd's backward of overlapping views is slow: pad the last slab with copies of the
        # last plane instead (one copy of the grid), so the slabs do not overlap
        size = -(-depth // k)
        k = -(-depth // size)
        pad = size * k - depth
        g = grid if pad == 0 else torch.cat([grid, grid[:, -1:].expand(1, pad, *grid.shape[2:])], dim=1)
        slabs, step = g.reshape(k, size, *grid.shape[2:]), size
    else:
        step = depth // k  # slab i starts at plane i * step; the last one also takes the remainder
        size = depth - step * (k - 1)
        g = grid.contiguous()
        # overlapping slabs as views of the grid (no copy): (k, size, H', W', 3)
        slabs = g.as_strided((k, size, *g.shape[2:]), (step * g.stride(1), *g.stride()[1:]), g.storage_offset())
    out = F.grid_sample(input.expand(k, *input.shape[1:]), slabs, mode=mode, padding_mode=padding_mode,
                        align_corners=align_corners)  # (k, C, size, H', W')
    parts = [out[i:i + 1, :, :step] for i in range(k - 1)] + [out[k - 1:, :, :depth - step * (k - 1)]]
    return torch.cat(parts, dim=2)
