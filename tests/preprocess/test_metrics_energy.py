"""Jacobian percentiles and mm-unit bending / elastic energies of known fields."""

import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.metrics import bending_energy, elastic_energy, jacobian_summary

SHAPE, VOX = (7, 8, 9), (2.0, 1.0, 1.5)


def _mm():
    idx = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in SHAPE], indexing="ij")
    return [i * s for i, s in zip(idx, VOX, strict=True)]


def _to_voxels(u_mm):
    return torch.stack(u_mm) / torch.tensor(VOX, dtype=torch.float64).view(3, 1, 1, 1)


def test_jacobian_summary_matches_numpy_percentiles():
    g = torch.Generator().manual_seed(0)
    jac = torch.rand(*SHAPE, generator=g, dtype=torch.float64) * 2 - 0.2
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[1:6, 2:7, 1:8] = True
    out = jacobian_summary(jac, mask)
    vals = jac[mask].numpy()
    med = np.percentile(vals, 50)
    assert out["median"] == pytest.approx(med)
    assert out["p0.5_rel"] == pytest.approx(np.percentile(vals, 0.5) / med)
    assert out["p99.5_rel"] == pytest.approx(np.percentile(vals, 99.5) / med)
    assert out["min"] == pytest.approx(vals.min()) and out["max"] == pytest.approx(vals.max())
    assert out["n_folded"] == int((vals <= 0).sum())


def test_energies_of_affine_and_quadratic_fields():
    x, y, z = _mm()
    zero = torch.zeros(SHAPE, dtype=torch.float64)
    affine = _to_voxels([0.1 * x + 0.05 * y + 2.0, -0.02 * z, 0.03 * x + 1.0])
    assert bending_energy(affine, VOX) == pytest.approx(0.0, abs=1e-20)  # second derivatives of affine
    translation = _to_voxels([zero + 3.0, zero - 1.0, zero + 2.0])
    assert elastic_energy(translation, VOX) == pytest.approx(0.0, abs=1e-20)
    stretch = _to_voxels([0.1 * x, zero, zero])  # e_xx = 0.1: mu 0.01 + lam / 2 0.01
    assert elastic_energy(stretch, VOX, mu=2.0, lam=4.0) == pytest.approx(0.02 + 0.02)
    shear = _to_voxels([0.1 * y, zero, zero])  # e_xy = e_yx = 0.05, no trace: mu (2 * 0.0025)
    assert elastic_energy(shear, VOX, mu=1.0, lam=7.0) == pytest.approx(0.005)
    # u_x = c y^2 (mm): u_yy = 2c exactly on inner voxels; torch.gradient's one-sided border
    # differences halve it on the first and last two rows of y, hence compare on a bound
    c = 0.01
    bend = bending_energy(_to_voxels([c * y ** 2, zero, zero]), VOX)
    assert 0.5 * (2 * c) ** 2 < bend <= (2 * c) ** 2 + 1e-12


def test_bending_energy_is_in_mm_units():
    # the same physical field on a grid with half the spacing scores the same (mm^-2)
    vals = []
    for scale in (1, 2):
        n = (SHAPE[0] - 1) * scale + 1
        h = 2.0 / scale
        x = torch.arange(n, dtype=torch.float64) * h
        u = torch.zeros(3, n, n, n, dtype=torch.float64)
        u[1] = torch.sin(x / 4.0).view(-1, 1, 1) / h  # u_y = sin(x / 4) mm, in voxels
        vals.append(bending_energy(u, (h, h, h)))
    # continuum value: mean of (sin(x / 4) / 16)^2; both grids approximate it (borders differ)
    assert vals[0] == pytest.approx(vals[1], rel=0.25)
    assert vals[1] == pytest.approx(float((torch.sin(torch.linspace(0, 12, 2001) / 4) / 16).pow(2).mean()), rel=0.3)


def test_metric_errors():
    jac = torch.ones(SHAPE)
    with pytest.raises(ImageError, match="jacobian_summary: expected jac_det"):
        jacobian_summary(jac, torch.ones(SHAPE))  # not bool
    with pytest.raises(ImageError, match="jacobian_summary: expected jac_det"):
        jacobian_summary(jac, torch.ones(7, 8, 8, dtype=torch.bool))
    with pytest.raises(ImageError, match="jacobian_summary: the mask selects no voxel"):
        jacobian_summary(jac, torch.zeros(SHAPE, dtype=torch.bool))
    with pytest.raises(ImageError, match=r"bending_energy: expected a \(3, X, Y, Z\) displacement"):
        bending_energy(torch.zeros(2, *SHAPE), VOX)
    with pytest.raises(ImageError, match="bending_energy: voxel_size_mm must be 3 positive"):
        bending_energy(torch.zeros(3, *SHAPE), (1.0, -1.0, 1.0))
    with pytest.raises(ImageError, match=r"elastic_energy: expected a \(3, X, Y, Z\) displacement"):
        elastic_energy(torch.zeros(3, 2, 8, 9), VOX)
