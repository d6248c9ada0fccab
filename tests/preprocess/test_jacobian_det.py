"""Jacobian determinants of maps with known derivatives."""

import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.jacobian import (
    affine_jacobian_determinant,
    jacobian_determinant,
    jacobian_matrix,
)
from vbmkit.preprocess.warp import identity_grid


def test_linear_map_jacobian_is_exact_everywhere_including_borders():
    a = torch.tensor([[1.1, 0.2, 0.0], [-0.1, 0.9, 0.3], [0.05, 0.0, 1.2]], dtype=torch.float64)
    phi = identity_grid((7, 8, 9), dtype=torch.float64) @ a.T + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    jac = jacobian_matrix(phi)
    assert torch.allclose(jac, a.expand(7, 8, 9, 3, 3), atol=1e-12)  # differences are exact on affine maps
    det = jacobian_determinant(phi)
    assert det.shape == (7, 8, 9)
    assert torch.allclose(det, torch.full_like(det, float(torch.linalg.det(a))), atol=1e-12)


def test_batch_and_folding_sign():
    phi = identity_grid((7, 8, 9))
    mirrored = phi.clone()
    mirrored[..., 0] = -mirrored[..., 0]
    det = jacobian_determinant(torch.stack([phi, mirrored]))
    assert det.shape == (2, 7, 8, 9)
    assert torch.allclose(det[0], torch.ones(7, 8, 9))
    assert torch.allclose(det[1], -torch.ones(7, 8, 9))


def test_affine_jacobian_determinant():
    m = np.diag([2.0, -1.5, 0.5, 1.0])
    m[:3, 3] = [10, 20, 30]
    assert affine_jacobian_determinant(m) == pytest.approx(1.5)


def test_jacobian_errors():
    with pytest.raises(ImageError, match="jacobian: expected a deformation"):
        jacobian_determinant(torch.zeros(7, 8, 9))
    with pytest.raises(ImageError, match="every axis needs >= 2 voxels"):
        jacobian_determinant(torch.zeros(1, 8, 9, 3))
    with pytest.raises(ImageError, match="affine matrix: expected a finite"):
        affine_jacobian_determinant(np.eye(3))
