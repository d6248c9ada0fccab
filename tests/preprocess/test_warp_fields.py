"""Scaling and squaring, composition and warping on tiny grids with known answers."""

import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.warp import (
    compose,
    deformation_to_displacement,
    displacement_to_deformation,
    identity_grid,
    identity_grid_mm,
    integrate_velocity,
    resize_field,
    to_sampling_grid,
    warp,
)

SHAPE = (7, 8, 9)


def _smooth_field(shape, amplitude, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, 3, 3, 3, generator=g)
    f = torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)
    return f / f.abs().max() * amplitude


def test_identity_grid_holds_voxel_indices_and_mm():
    g = identity_grid(SHAPE)
    assert g.shape == (*SHAPE, 3)
    assert g[3, 5, 7].tolist() == [3.0, 5.0, 7.0]
    aff = torch.tensor([[-2.0, 0, 0, 10], [0, 1.5, 0, -3], [0, 0, 3, 1], [0, 0, 0, 1]]).numpy()
    mm = identity_grid_mm(SHAPE, aff)
    assert torch.allclose(mm[1, 2, 3], torch.tensor([8.0, 0.0, 10.0]))


def test_to_sampling_grid_maps_corners_to_minus_one_and_one_in_zyx_order():
    g = to_sampling_grid(identity_grid(SHAPE)[None], SHAPE)
    assert torch.allclose(g[0, 0, 0, 0], torch.tensor([-1.0, -1.0, -1.0]))
    assert torch.allclose(g[0, -1, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))  # x is the last coordinate


def test_warp_with_identity_and_integer_shift():
    img = torch.rand(1, 2, *SHAPE, generator=torch.Generator().manual_seed(1))
    phi = identity_grid(SHAPE)
    assert torch.allclose(warp(img, phi), img, atol=1e-5)
    shifted = phi.clone()
    shifted[..., 1] += 2  # sample 2 voxels further along y
    out = warp(img, shifted)
    assert torch.allclose(out[:, :, :, :-2], img[:, :, :, 2:], atol=1e-5)
    assert torch.all(out[:, :, :, -2:] == 0)  # zero padding outside


def test_integrate_constant_velocity_is_a_translation():
    v = torch.zeros(1, 3, *SHAPE)
    v[:, 0], v[:, 1], v[:, 2] = 1.5, -0.5, 2.0
    u = integrate_velocity(v, steps=7)
    assert torch.allclose(u, v, atol=1e-5)  # exp of a constant field is that translation
    assert torch.equal(integrate_velocity(torch.zeros(1, 3, *SHAPE)), torch.zeros(1, 3, *SHAPE))


def test_exp_minus_v_inverts_exp_v():
    v = _smooth_field((20, 22, 18), 2.0)
    fwd, bwd = integrate_velocity(v), integrate_velocity(-v)
    err = compose(fwd, bwd).abs()[:, :, 3:-3, 3:-3, 3:-3]
    # trilinear interpolation of a smooth field: ~1e-2 voxel, far below the 2-voxel field
    assert float(err.max()) < 0.05


def test_compose_of_translations_adds():
    a = torch.zeros(1, 3, *SHAPE)
    b = torch.zeros(1, 3, *SHAPE)
    a[:, 0] = 1.0
    b[:, 2] = -2.0
    assert torch.allclose(compose(a, b), a + b, atol=1e-5)


def test_deformation_displacement_round_trip_and_resize_units():
    u = _smooth_field(SHAPE, 1.0)
    assert torch.allclose(deformation_to_displacement(displacement_to_deformation(u)), u, atol=1e-6)
    ones = torch.ones(1, 3, 9, 9, 9)
    big = resize_field(ones, (17, 17, 17))
    assert torch.allclose(big, 2 * torch.ones_like(big))  # one old voxel = 2 new voxels


def test_field_errors_name_the_argument():
    with pytest.raises(ImageError, match="v: expected a \\(B, 3, X, Y, Z\\)"):
        integrate_velocity(torch.zeros(3, *SHAPE))
    with pytest.raises(ImageError, match="compose: outer"):
        compose(torch.zeros(1, 3, 7, 8, 9), torch.zeros(1, 3, 7, 8, 8))
    with pytest.raises(ImageError, match="warp: expected image"):
        warp(torch.zeros(*SHAPE), identity_grid(SHAPE))
    with pytest.raises(ImageError, match="warp: expected deformation"):
        warp(torch.zeros(1, 1, *SHAPE), torch.zeros(*SHAPE, 2))
    with pytest.raises(ImageError, match="steps must be >= 0"):
        integrate_velocity(torch.zeros(1, 3, *SHAPE), steps=-1)
    with pytest.raises(ImageError, match="deformation: expected"):
        deformation_to_displacement(torch.zeros(4, 4))
