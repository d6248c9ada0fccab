"""Regional volumes on hand-built label phantoms with known tissue fractions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import DEVICES
from vbmkit.errors import GridMismatchError, ImageError
from vbmkit.stats.roi import region_index, region_sums, region_volumes

SHAPE = (7, 8, 9)
# Flipped, anisotropic voxels: |det| = 1.2 * 0.9 * 2.0 mm^3 = 2.16e-3 mL.
AFFINE = np.diag([-1.2, 0.9, 2.0, 1.0])
DV = abs(np.linalg.det(AFFINE[:3, :3])) / 1000.0


def _phantom():
    """Labels 0 (background), 5, 9, 12 in slabs, and per-region GM/WM fractions per subject."""
    labels = torch.zeros(SHAPE, dtype=torch.int64)
    labels[1:3] = 5          # 2 x 8 x 9 = 144 voxels
    labels[3:6, :5] = 9      # 3 x 5 x 9 = 135 voxels
    labels[3:6, 5:, 4:] = 12  # 3 x 3 x 5 = 45 voxels
    # fractions[subject][tissue] = {region: value}, outside regions a constant background value
    fractions = [
        [{5: 0.25, 9: 0.5, 12: 0.125, 0: 0.0625}, {5: 0.75, 9: 0.375, 12: 0.0, 0: 0.0}],
        [{5: 0.1, 9: 0.7, 12: 1.3, 0: 0.0}, {5: 0.2, 9: 0.3, 12: 0.4, 0: 0.05}],
        [{5: 0.0, 9: 0.0, 12: 0.0, 0: 0.0}, {5: 1.0, 9: 1.0, 12: 1.0, 0: 1.0}],
    ]
    maps = torch.zeros(len(fractions), 2, *SHAPE, dtype=torch.float32)
    for b, subj in enumerate(fractions):
        for t, frac in enumerate(subj):
            for rid, value in frac.items():
                maps[b, t][labels == rid] = value
    counts = {rid: int((labels == rid).sum()) for rid in (0, 5, 9, 12)}
    return labels, maps, fractions, counts


@pytest.mark.parametrize("device", DEVICES)
def test_volumes_equal_hand_count(device):
    labels, maps, fractions, counts = _phantom()
    assert counts == {0: 180, 5: 144, 9: 135, 12: 45}  # the phantom is what we think it is
    index = region_index(labels, [5, 9, 12], device=device)
    vols = region_volumes(maps.to(device), index, voxel_volume_ml=DV, chunk=50)
    for b, subj in enumerate(fractions):
        for t, frac in enumerate(subj):
            # hand count with the float32 value actually stored (0.1 is not exact in float32)
            hand = {r: counts[r] * float(np.float32(frac[r])) * DV for r in counts}
            for j, rid in enumerate((5, 9, 12)):
                assert abs(vols.regional[b, t, j].item() - hand[rid]) < 1e-6
            assert abs(vols.total[b, t].item() - sum(hand.values())) < 1e-6
    np.testing.assert_allclose(vols.region_ml.cpu().numpy(), np.array([144, 135, 45]) * DV, atol=1e-12)
    assert vols.regional.dtype == torch.float64


def test_regions_sum_to_total_when_atlas_covers_tissue():
    labels, maps, _, _ = _phantom()
    maps[:, :, labels == 0] = 0.0  # no tissue outside the atlas
    index = region_index(labels, [5, 9, 12])
    vols = region_volumes(maps, index, voxel_volume_ml=DV)
    diff = (vols.regional.sum(-1) - vols.total).abs().max().item()
    assert diff < 1e-6


def test_exact_with_many_voxels_in_float64():
    """1.2 million voxels of 0.1 (float32): float32 accumulation would drift by ~1e-2 voxels."""
    labels = torch.ones(100, 110, 109, dtype=torch.int64)
    value = torch.tensor(0.1, dtype=torch.float32)
    maps = value.expand(1, 1, *labels.shape).clone()
    vols = region_volumes(maps, region_index(labels, [1]), voxel_volume_ml=0.003375)
    hand = labels.numel() * float(value) * 0.003375
    assert abs(vols.regional[0, 0, 0].item() - hand) < 1e-6
    assert abs(vols.total[0, 0].item() - hand) < 1e-6


def test_unlisted_and_absent_ids():
    labels, maps, _, counts = _phantom()
    index = region_index(labels, [9, 77])  # 5 and 12 unlisted, 77 absent
    regional, total = region_sums(maps[0, 0][None], index)
    assert regional[0, 1].item() == 0.0
    assert index.n_voxels.tolist() == [135, 0]
    assert abs(regional[0, 0].item() - 135 * 0.5) < 1e-9
    assert total[0].item() == pytest.approx(144 * 0.25 + 135 * 0.5 + 45 * 0.125 + 180 * 0.0625)
    assert counts[9] == 135


def test_errors():
    labels, maps, _, _ = _phantom()
    index = region_index(labels, [5, 9])
    with pytest.raises(GridMismatchError, match=r"expected \(7, 8, 9\) = 504 voxels"):
        region_sums(torch.zeros(2, 7, 8, 10), index)
    with pytest.raises(ImageError, match="expected an \\(X, Y, Z\\) integer tensor"):
        region_index(labels.float(), [5])
    with pytest.raises(ImageError, match="expected unique ids"):
        region_index(labels, [5, 5])
    with pytest.raises(ImageError, match=r"expected \(B, T, X, Y, Z\)"):
        region_volumes(maps[0], index, voxel_volume_ml=DV)
