"""Push modulation ('preserve amount'): the adjoint of trilinear pull conserves the total exactly."""

import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.modulate import modulate_native, push_amount
from vbmkit.preprocess.warp import blur, displacement_to_deformation, integrate_velocity, warp
from vbmkit.space import Grid

SHAPE = (7, 8, 9)


def test_push_conserves_the_total_of_points_inside_the_grid():
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(500, 3, generator=g, dtype=torch.float64) * (torch.tensor(SHAPE) - 1)
    amount = torch.rand(2, 500, generator=g)
    out = push_amount(amount, pos, SHAPE)
    assert out.shape == (2, *SHAPE) and out.dtype == torch.float64
    np.testing.assert_allclose(out.sum((1, 2, 3)).numpy(), amount.double().sum(1).numpy(), rtol=1e-12)


def test_push_is_the_adjoint_of_trilinear_pull():
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(300, 3, generator=g, dtype=torch.float64) * (torch.tensor(SHAPE) + 2) - 1.5  # some outside
    a = torch.rand(1, 300, generator=g, dtype=torch.float64)
    b = torch.rand(1, 1, *SHAPE, generator=g, dtype=torch.float64)
    pulled = warp(b, pos.view(1, 300, 1, 1, 3))[0, :, :, 0, 0]  # (1, 300), zero padding
    lhs = float((push_amount(a, pos, SHAPE) * b[0]).sum())
    rhs = float((a * pulled).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10)  # <push a, b> = <a, pull b>, float64 throughout


def test_push_drops_weight_outside_the_grid_and_non_finite_points():
    pos = torch.tensor([[-0.5, 3.0, 4.0], [3.0, 3.0, float("nan")], [-5.0, 0.0, 0.0]], dtype=torch.float64)
    out = push_amount(torch.ones(1, 3), pos, SHAPE)
    assert float(out.sum()) == pytest.approx(0.5)  # half of the first point lands on x = 0


def _rot(deg, axis):
    a = np.deg2rad(deg)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return r


@pytest.mark.parametrize("flip", [False, True])
def test_push_modulation_conserves_native_volume_on_anisotropic_grids(flip):
    # native (7, 8, 9) with anisotropic, optionally flipped voxels; the template grid covers it
    native_affine = np.diag([-1.3 if flip else 1.3, 1.1, 0.9, 1.0])
    native_affine[:3, 3] = [4.5 if flip else -4.5, -4.0, -3.5]
    native = Grid(SHAPE, native_affine)
    template = Grid((13, 12, 11), np.array([[1.6, 0, 0, -9.6], [0, 1.7, 0, -9.35], [0, 0, 1.8, -9.0], [0, 0, 0, 1]]))
    g = torch.Generator().manual_seed(2)
    tissue = torch.rand(2, *SHAPE, generator=g)
    matrix = np.eye(4)  # template mm -> subject mm
    matrix[:3, :3] = _rot(7, 2) @ _rot(-4, 0) @ np.diag([1.05, 0.97, 1.02])
    matrix[:3, 3] = [0.4, -0.3, 0.2]
    v = blur(torch.randn(1, 3, *template.shape, generator=g), 2.0) * 1.5
    phi = displacement_to_deformation(integrate_velocity(v))[0]
    inv = displacement_to_deformation(integrate_velocity(-v))[0]
    out = modulate_native(tissue, native, template, matrix, phi, inverse=inv, method="push")
    pushed_ml = out.modulated.double().sum((1, 2, 3)) * template.voxel_volume_ml
    native_ml = tissue.double().sum((1, 2, 3)) * native.voxel_volume_ml
    # every native voxel lands inside the template grid, so nothing is lost: float32 rounding only
    np.testing.assert_allclose(pushed_ml.numpy(), native_ml.numpy(), rtol=1e-5)


def test_push_errors():
    with pytest.raises(ImageError, match=r"push_amount: expected amount \(C, N\) and positions \(N, 3\)"):
        push_amount(torch.ones(2, 4), torch.zeros(5, 3), SHAPE)
    with pytest.raises(ImageError, match=r"push_amount: expected amount \(C, N\) and positions \(N, 3\)"):
        push_amount(torch.ones(2, 4), torch.zeros(4, 2), SHAPE)
    with pytest.raises(ImageError, match="push_amount: shape must be 3 positive sizes"):
        push_amount(torch.ones(2, 4), torch.zeros(4, 3), (7, 0, 9))
