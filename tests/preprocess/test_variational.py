"""Variational registration (symmetric SSD + regulariser in mm): phantoms with known answers."""

import numpy as np
import pytest
import torch

from tests.conftest import DEVICES
from tests.preprocess.registration_phantoms import SHAPE, edge_agreement, moved, phantom
from vbmkit.errors import ImageError
from vbmkit.preprocess.jacobian import jacobian_determinant
from vbmkit.preprocess.metrics import folding, warp_mse
from vbmkit.preprocess.variational import (
    SHOOT_WEIGHTS,
    register_variational,
    regulariser_energy,
    regulariser_gradient,
)
from vbmkit.preprocess.warp import (
    deformation_to_displacement,
    integrate_velocity,
    warp,
)


@pytest.mark.parametrize("device", DEVICES)
def test_recovers_a_smooth_deformation_without_folding(device):
    fixed = phantom()
    moving, true_velocity = moved(fixed, 2.5)
    res = register_variational(moving, fixed, voxel_size_mm=(1.5, 1.5, 1.5), levels=(2, 1),
                               lambdas=(0.2, 0.1), iterations=(40, 30), device=device)
    phi = res.deformation.cpu()
    before = warp_mse(moving, fixed)
    after = warp_mse(warp(moving[None], phi)[0], fixed)
    assert after < before / 5  # measured 2.98e-3 -> 1.84e-4 (x16); the true inverse leaves 2.9e-4 of blur
    # moving = fixed o exp(w): the answer is exp(-w), identifiable only across edges (aperture
    # problem), so compare at the 25 % strongest gradients, as for the demons. Measured: cosine
    # 0.72, RMS error 0.45 voxel against 0.65 voxel of true displacement.
    truth = integrate_velocity(-true_velocity)[0]
    found = deformation_to_displacement(phi)[0]
    cosine, rms_error, rms_true = edge_agreement(fixed, truth, found)
    assert cosine > 0.6 and rms_error < 0.8 * rms_true
    assert folding(jacobian_determinant(phi))["n_folded"] == 0
    assert res.deformation.shape == (*SHAPE, 3) and res.velocity.shape == (3, *SHAPE)
    # exp(-v) inverts exp(v): u(x) + u_inv(x + u(x)) ~ 0 away from the border (where the
    # field is extended by its border values); measured max 0.04 voxel
    back = warp(deformation_to_displacement(res.inverse.cpu()), phi)[0]
    err = (deformation_to_displacement(phi)[0] + back)[:, 3:-3, 3:-3, 3:-3].abs().max()
    assert float(err) < 0.1


def test_energy_decreases_at_every_step():
    fixed = phantom()
    moving, _ = moved(fixed, 2.0, seed=1)
    res = register_variational(moving, fixed, levels=(1,), lambdas=(0.1,), iterations=(15,))
    e = np.array(res.loss_history)
    assert len(e) >= 5 and np.all(np.diff(e) < 0)  # backtracking accepts only decreasing steps


def test_stiffer_regularisation_gives_a_smoother_field():
    fixed = phantom()
    moving, _ = moved(fixed, 2.5)
    soft = register_variational(moving, fixed, levels=(2, 1), lambdas=(0.02, 0.01), iterations=(30, 20))
    stiff = register_variational(moving, fixed, levels=(2, 1), lambdas=(2.0, 1.0), iterations=(30, 20))
    r_soft = float(regulariser_energy(soft.velocity[None] * 1.5, (1.5,) * 3))
    r_stiff = float(regulariser_energy(stiff.velocity[None] * 1.5, (1.5,) * 3))
    assert r_stiff < r_soft


def test_identical_images_give_the_identity():
    fixed = phantom()
    res = register_variational(fixed, fixed, levels=(2, 1), lambdas=(1.0, 1.0), iterations=(5, 5))
    assert float(res.velocity.abs().max()) == 0.0
    assert res.loss_history == []  # the gradient is zero: no step to take


def _physical_case(n: int, fov: float = 60.0):
    """The same mm-defined phantom and mm-defined deformation sampled with (fov / (n - 1)) mm voxels."""
    h = fov / (n - 1)
    c = torch.linspace(-fov / 2, fov / 2, n, dtype=torch.float64)
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")

    def tissue(x, y, z):
        r = torch.sqrt(x ** 2 + (y / 1.1) ** 2 + z ** 2)
        core = torch.sigmoid((11 - r) / 2.0)
        outer = torch.sigmoid((20 - r) / 2.0)
        return torch.stack([outer - core, core]).float()

    ux = 3.0 * torch.sin(torch.pi * y / fov) * torch.exp(-(x ** 2 + z ** 2) / 600)
    uy = 2.0 * torch.cos(torch.pi * x / fov) * torch.exp(-(y ** 2 + z ** 2) / 600)
    moving = tissue(x + ux, y + uy, z)  # fixed o (x + u), u in mm
    return moving, tissue(x, y, z), h


def test_regularisation_is_in_mm_same_physical_answer_on_two_grids():
    out = {}
    for n in (31, 16):  # 2 mm and 4 mm voxels over the same 60 mm
        moving, fixed, h = _physical_case(n)
        res = register_variational(moving, fixed, voxel_size_mm=(h, h, h), levels=(1,), lambdas=(0.05,),
                                   iterations=(60,))
        out[n] = deformation_to_displacement(res.deformation)[0] * h  # mm
    fine_on_coarse = out[31][:, ::2, ::2, ::2]
    diff = float((fine_on_coarse - out[16]).pow(2).sum(0).mean().sqrt())
    size = float(out[16].pow(2).sum(0).mean().sqrt())
    # measured: RMS difference 0.052 mm against 0.58 mm of displacement (0.09); both grids find
    # the same physical field because data and regulariser are means over voxels of mm
    # quantities. Passing voxel_size_mm=(1, 1, 1) on both grids (a regulariser in voxels)
    # gives 0.21 mm against 0.70 mm (0.30), so the bound separates the two.
    assert size > 0.3 and diff < 0.15 * size


def test_regulariser_energy_of_known_fields():
    shape, h = (7, 8, 9), (2.0, 1.0, 1.5)
    idx = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij")
    mm = [i * s for i, s in zip(idx, h, strict=True)]
    zero = torch.zeros(shape, dtype=torch.float64)
    translation = torch.stack([zero + 2.0, zero - 1.0, zero + 0.5])[None]
    assert float(regulariser_energy(translation, h, weights=(1, 1, 1, 1, 1))) == pytest.approx(5.25)  # |t|^2
    stretch = torch.stack([0.1 * mm[0], zero, zero])[None]  # v_x = 0.1 x (mm)
    assert float(regulariser_energy(stretch, h, weights=(0, 1, 0, 0, 0))) == pytest.approx(0.01)
    assert float(regulariser_energy(stretch, h, weights=(0, 0, 1, 0, 0))) == pytest.approx(0.0, abs=1e-20)
    assert float(regulariser_energy(stretch, h, weights=(0, 0, 0, 2, 4))) == pytest.approx(2 * 0.01 + 2 * 0.01)
    bend = torch.stack([0.05 * mm[1] ** 2, zero, zero])[None]  # lap v_x = 0.1 mm^-1 everywhere
    assert float(regulariser_energy(bend, h, weights=(0, 0, 1, 0, 0))) == pytest.approx(0.01)


@pytest.mark.parametrize("device", DEVICES)
def test_a_coarser_velocity_grid_still_recovers_the_deformation(device):
    fixed = phantom()
    moving, true_velocity = moved(fixed, 2.5)
    kw = dict(voxel_size_mm=(1.5, 1.5, 1.5), levels=(2, 1), lambdas=(0.2, 0.1), iterations=(40, 30), device=device)
    fine = register_variational(moving, fixed, **kw)
    coarse = register_variational(moving, fixed, velocity_levels=(2, 2), **kw)
    phi = coarse.deformation.cpu()
    before = warp_mse(moving, fixed)
    after_fine = warp_mse(warp(moving[None], fine.deformation.cpu())[0], fixed)
    after = warp_mse(warp(moving[None], phi)[0], fixed)
    # the planted velocity is smooth at the scale of the coarse grid, so the coarse velocity
    # aligns about as well: measured 2.98e-3 -> 1.84e-4 (fine) and 2.22e-4 (coarse); edge
    # agreement cosine 0.74, RMS error 0.44 voxel against 0.65
    assert after < before / 5 and after < 1.5 * after_fine
    truth = integrate_velocity(-true_velocity)[0]
    cosine, rms_error, rms_true = edge_agreement(fixed, truth, deformation_to_displacement(phi)[0])
    assert cosine > 0.6 and rms_error < 0.8 * rms_true
    assert folding(jacobian_determinant(phi))["n_folded"] == 0
    assert coarse.velocity.shape == (3, *SHAPE) and len(coarse.loss_history) > 0
    assert all(b <= a for a, b in zip(coarse.loss_history[-20:], coarse.loss_history[-19:], strict=False))


def test_velocity_levels_equal_to_levels_change_nothing():
    fixed = phantom()
    moving, _ = moved(fixed, 2.0, seed=1)
    kw = dict(levels=(2, 1), lambdas=(0.2, 0.1), iterations=(5, 5))
    a = register_variational(moving, fixed, **kw)
    b = register_variational(moving, fixed, velocity_levels=(2, 1), **kw)
    assert torch.equal(a.deformation, b.deformation) and a.loss_history == b.loss_history


@pytest.mark.parametrize(("shape", "weights", "h"), [
    ((2, 3, 5, 6, 7), (1, 1, 1, 1, 1), (1.0, 2.0, 3.0)),
    ((1, 3, 3, 4, 5), (0.3, 0, 2, 0, 0.7), (1.5, 1.5, 1.5)),
    ((1, 3, 9, 8, 7), SHOOT_WEIGHTS, (1.2, 1.5, 0.9)),
    ((1, 3, 4, 4, 4), (0, 0, 0, 1, 0), (1.0, 1.0, 1.0)),
])
def test_regulariser_gradient_equals_autograd(shape, weights, h):
    v = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    (expected,) = torch.autograd.grad(regulariser_energy(v, h, weights=weights), v)
    got = regulariser_gradient(v.detach(), h, weights=weights)
    assert got.shape == v.shape
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12 * float(expected.abs().max()))


def test_regulariser_gradient_of_a_quadratic_form():
    # R is quadratic: R(v) = <v, grad R(v)> / 2, and the gradient of a translation is 2 a t / N
    v = torch.randn(1, 3, 6, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    h = (1.5, 1.0, 2.0)
    assert float((v * regulariser_gradient(v, h)).sum() / 2) == pytest.approx(float(regulariser_energy(v, h)))
    t = torch.ones(1, 3, 4, 5, 6, dtype=torch.float64)
    assert torch.allclose(regulariser_gradient(t, h, weights=(1, 1, 1, 1, 1)), torch.full_like(t, 2 / 120))


def test_errors():
    img = phantom()
    with pytest.raises(ImageError, match="moving and fixed must be"):
        register_variational(img, img[:1, :-1])
    with pytest.raises(ImageError, match="every axis needs >= 4 voxels"):
        register_variational(img[:, :3], img[:, :3])
    with pytest.raises(ImageError, match="voxel_size_mm must be 3 positive"):
        register_variational(img, img, voxel_size_mm=(1.5, 0, 1.5))
    with pytest.raises(ImageError, match="must be non-empty and of equal length"):
        register_variational(img, img, levels=(2, 1), lambdas=(1.0,), iterations=(5, 5))
    with pytest.raises(ImageError, match="lambdas must be positive"):
        register_variational(img, img, levels=(1,), lambdas=(0.0,), iterations=(5,))
    bad = img.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ImageError, match="NaN or Inf"):
        register_variational(bad, img)
    with pytest.raises(ImageError, match="weights: expected 5 non-negative"):
        register_variational(img, img, weights=(1, 0, 0, 0, 0))
    with pytest.raises(ImageError, match=r"velocity_levels \(1, 1\) must give one factor per level, each >="):
        register_variational(img, img, levels=(2, 1), lambdas=(1.0, 1.0), iterations=(5, 5), velocity_levels=(1, 1))
    with pytest.raises(ImageError, match="velocity_levels"):
        register_variational(img, img, levels=(2, 1), lambdas=(1.0, 1.0), iterations=(5, 5), velocity_levels=(2,))
    with pytest.raises(ImageError, match="weights: expected 5 non-negative"):
        regulariser_energy(torch.zeros(1, 3, 4, 4, 4), (1, 1, 1), weights=SHOOT_WEIGHTS[:4])
    with pytest.raises(ImageError, match=r"regulariser_energy: expected a \(B, 3, X, Y, Z\)"):
        regulariser_energy(torch.zeros(1, 2, 4, 4, 4), (1, 1, 1))
    with pytest.raises(ImageError, match="regulariser_energy: voxel_size_mm"):
        regulariser_energy(torch.zeros(1, 3, 4, 4, 4), (1, 1))
    with pytest.raises(ImageError, match=r"regulariser_gradient: expected a \(B, 3, X, Y, Z\)"):
        regulariser_gradient(torch.zeros(1, 3, 2, 4, 4), (1, 1, 1))
