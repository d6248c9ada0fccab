"""warp_mse, torchreg-compatible linear elasticity and folding counts."""

import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.metrics import folding, linear_elasticity, warp_mse


def test_warp_mse_uses_first_two_channels_and_all_voxels():
    t = torch.zeros(3, 7, 8, 9)
    w = torch.zeros(2, 7, 8, 9)
    w[0, 0, 0, 0] = 1.0
    t[2] = 5.0  # the template's third class is ignored
    assert warp_mse(w, t) == pytest.approx(1.0 / (2 * 7 * 8 * 9))


@pytest.mark.parametrize("shape", [(7, 8, 9), (9, 10, 9)])
def test_linear_elasticity_matches_torchreg(shape):
    torchreg_metrics = pytest.importorskip("torchreg.metrics")
    u = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sizes = torch.tensor([n - 1 for n in shape], dtype=torch.float64)
    u_norm = (u[0].permute(1, 2, 3, 0).flip(-1) * (2 / sizes).flip(0))[None]  # torchreg's layout
    ref = torchreg_metrics.LinearElasticity(mu=2.0, lam=1.0)(u_norm).item()
    # torchreg builds its identity grid in float32: agreement to float32 precision
    assert linear_elasticity(u[0]) == pytest.approx(ref, rel=1e-6)


def test_linear_elasticity_of_zero_field_is_torchregs_constant():
    # on a grid with X == Z torchreg's value of the identity is 35 (its double identity term)
    assert linear_elasticity(torch.zeros(3, 9, 10, 9)) == pytest.approx(35.0)


def test_folding_counts_non_positive_voxels():
    j = torch.ones(7, 8, 9)
    j[0, 0, 0] = -0.5
    j[1, 1, 1] = 0.0
    j[2, 2, 2] = 3.0
    assert folding(j) == {"min": -0.5, "max": 3.0, "n_folded": 2}


def test_metric_errors():
    with pytest.raises(ImageError, match="warp_mse: expected warped and template"):
        warp_mse(torch.zeros(1, 7, 8, 9), torch.zeros(2, 7, 8, 9))
    with pytest.raises(ImageError, match="warp_mse: warped grid"):
        warp_mse(torch.zeros(2, 7, 8, 9), torch.zeros(2, 7, 8, 8))
    with pytest.raises(ImageError, match="linear_elasticity: expected a \\(3, X, Y, Z\\)"):
        linear_elasticity(torch.zeros(2, 7, 8, 9))
    with pytest.raises(ImageError, match="every axis needs >= 3 voxels"):
        linear_elasticity(torch.zeros(3, 2, 8, 9))
    with pytest.raises(ImageError, match="folding: expected a non-empty"):
        folding(torch.zeros(0))
