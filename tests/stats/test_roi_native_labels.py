"""Atlas labels in native space through the numerical inverse of a template -> native field."""

from __future__ import annotations

import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.stats.roi_native import fit_affine, invert_points, native_labels

T_SHAPE = (7, 8, 9)
N_SHAPE = (12, 11, 10)


def _field(nonlinear: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Template voxel -> native voxel: scale 1.4 / 1.2 / 1.0, x flipped, shifted, optional wobble."""
    a = torch.tensor([[-1.4, 0.0, 0.0, 10.3], [0.0, 1.2, 0.1, 0.7], [0.0, 0.0, 1.0, 0.4],
                      [0, 0, 0, 1.0]], dtype=torch.float64)
    axes = [torch.arange(n, dtype=torch.float64) for n in T_SHAPE]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    field = ijk @ a[:3, :3].T + a[:3, 3]
    field[..., 1] += nonlinear * torch.sin(ijk[..., 0] * 0.7)
    return field.float(), a


def test_affine_field_inverts_exactly():
    field, a = _field()
    torch.testing.assert_close(fit_affine(field), a, atol=1e-5, rtol=0)  # float32 field
    pts = torch.tensor([[3.0, 4.0, 5.0], [8.2, 2.5, 3.3]], dtype=torch.float64)
    t, ok = invert_points(field, pts)
    expected = pts @ torch.linalg.inv(a)[:3, :3].T + torch.linalg.inv(a)[:3, 3]
    torch.testing.assert_close(t, expected, atol=1e-4, rtol=0)
    assert ok.all()


def test_nonlinear_field_residual_within_tolerance():
    field, _ = _field(nonlinear=0.3)
    pts = torch.tensor([[5.0, 4.0, 3.0], [7.0, 6.0, 5.0]], dtype=torch.float64)
    t, ok = invert_points(field, pts, tol=1e-3)
    assert ok.all()
    # forward map evaluated analytically at the found positions gives the points back
    a = torch.tensor([[-1.4, 0.0, 0.0, 10.3], [0.0, 1.2, 0.1, 0.7], [0.0, 0.0, 1.0, 0.4]], dtype=torch.float64)
    fwd = t @ a[:, :3].T + a[:, 3]
    fwd[:, 1] += 0.3 * torch.sin(t[:, 0] * 0.7)
    # trilinear interpolation of the sampled sine differs from the sine by < 0.3 * 0.7^2 / 8
    assert (fwd - pts).abs().max() < 0.02


def test_native_labels_match_direct_lookup():
    field, a = _field()
    labels = torch.zeros(T_SHAPE, dtype=torch.int64)
    labels[:3] = 4
    labels[4:, :5] = 7
    mask = torch.zeros(N_SHAPE, dtype=torch.bool)
    mask[1:11, 1:10, 1:9] = True
    out, failed = native_labels(labels, field, N_SHAPE, mask=mask, chunk=97)
    inv = torch.linalg.inv(a)
    expected = torch.zeros(N_SHAPE, dtype=torch.int64)
    for idx in mask.nonzero():
        t = idx.double() @ inv[:3, :3].T + inv[:3, 3]
        v = torch.floor(t + 0.5).long()
        if ((v >= 0) & (v < torch.tensor(T_SHAPE))).all() and ((t > -0.5) & (t < torch.tensor(T_SHAPE) - 0.5)).all():
            expected[tuple(idx)] = labels[tuple(v)]
    assert failed == 0
    assert torch.equal(out, expected)
    assert set(out.unique().tolist()) == {0, 4, 7}


def test_errors():
    field, _ = _field()
    with pytest.raises(ImageError, match=r"field: expected shape \(7, 8, 10, 3\)"):
        native_labels(torch.zeros(7, 8, 10, dtype=torch.int64), field, N_SHAPE)
    with pytest.raises(ImageError, match="expected an \\(X, Y, Z\\) integer tensor"):
        native_labels(torch.zeros(T_SHAPE), field, N_SHAPE)
