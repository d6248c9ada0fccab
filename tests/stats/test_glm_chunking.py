"""Voxel blocks and memory budgets (vbmkit.stats.chunking)."""

from __future__ import annotations

import pytest
import torch

from vbmkit.errors import ConfigError
from vbmkit.stats.chunking import chunk_size, default_memory_bytes, iter_voxel_blocks

CPU = torch.device("cpu")


def test_chunk_size_fits_the_budget():
    assert chunk_size(100, 10_000, memory_bytes=1000 + 100 * 300, device=CPU, fixed_bytes=1000, align=1) == 300
    assert chunk_size(100, 10_000, memory_bytes=1000 + 100 * 300, device=CPU, fixed_bytes=1000) == 256  # aligned
    assert chunk_size(100, 50, memory_bytes=10**9, device=CPU) == 50  # never wider than the data
    assert default_memory_bytes(CPU) > 0


def test_budget_too_small():
    with pytest.raises(ConfigError, match="memory_bytes: expected at least 1100 bytes for one voxel block; got 500"):
        chunk_size(100, 10, memory_bytes=500, device=CPU, fixed_bytes=1000)


def test_blocks_cover_the_voxels_in_order():
    Y = torch.arange(3 * 10, dtype=torch.float64).reshape(3, 10)
    blocks = list(iter_voxel_blocks(Y, 4, CPU))
    assert [b[0] for b in blocks] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert all(b[1].dtype == torch.float32 for b in blocks)
    torch.testing.assert_close(torch.cat([b[1] for b in blocks], 1), Y.float())
