"""vbmkit.sampling.grid_sample: the same numbers as torch's grid_sample, on more threads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vbmkit.sampling import grid_sample


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def _grid(shape, seed=0, spread=1.2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, *shape, 3, generator=g) * 2 - 1) * spread  # some positions outside


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("mode,padding", [("bilinear", "zeros"), ("bilinear", "border"), ("nearest", "zeros")])
def test_equals_torch_grid_sample_bit_for_bit(threads, monkeypatch, n_threads, mode, padding):
    threads(n_threads)
    x = torch.randn(1, 3, 20, 17, 15, generator=torch.Generator().manual_seed(1))
    grid = _grid((37, 33, 29))  # 37 planes: not a multiple of the slab count
    batches, original = [], F.grid_sample

    def spy(inp, g, **kw):
        batches.append(g.shape[0])
        return original(inp, g, **kw)

    monkeypatch.setattr("vbmkit.sampling.F.grid_sample", spy)
    ours = grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=True)
    monkeypatch.undo()
    assert batches == [n_threads]  # one call, one slab per thread
    ref = F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=True)
    assert ours.shape == ref.shape == (1, 3, 37, 33, 29)
    assert torch.equal(ours, ref)


def test_gradients_equal_torch(threads):
    threads(2)
    x = torch.randn(1, 2, 12, 11, 10, generator=torch.Generator().manual_seed(2))
    grid = _grid((41, 30, 30), seed=3, spread=0.9)
    w = torch.randn(1, 2, 41, 30, 30, generator=torch.Generator().manual_seed(4))
    grads = []
    for fn in (grid_sample, F.grid_sample):
        xi, gi = x.clone().requires_grad_(True), grid.clone().requires_grad_(True)
        (fn(xi, gi, mode="bilinear", padding_mode="border", align_corners=True) * w).sum().backward()
        grads.append((xi.grad, gi.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)  # summed over slabs
    assert torch.equal(grads[0][1], grads[1][1])


def test_point_lists_and_batches_pass_through(threads):
    threads(2)
    x = torch.randn(1, 9, 8, 8, 8)
    points = _grid((50_000, 1, 1), seed=5, spread=1.0)  # roi_native's (1, M, 1, 1, 3) layout
    assert torch.equal(grid_sample(x, points), F.grid_sample(x, points, align_corners=True))
    xb, gb = torch.randn(2, 1, 8, 8, 8), _grid((40, 30, 30), seed=6).expand(2, -1, -1, -1, -1)
    assert torch.equal(grid_sample(xb, gb), F.grid_sample(xb, gb, align_corners=True))
