import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.brainmask import (
    bbox_with_margin,
    brain_mask,
    deepbet_probability,
    foreground,
    largest_component,
    net_normalize,
)

SMALL = dict(small_shape=(16, 16, 16), shape=(32, 32, 32))  # tiny network inputs for speed


class ThresholdNet(torch.nn.Module):
    """Stand-in for a deepbet network: brain probability = the brightest voxels of its input,
    optionally cut beyond 3/4 of the first axis (a network that cuts brain)."""

    def __init__(self, cut_half: bool = False):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))  # deepbet_probability reads the device from it
        self.cut_half = cut_half

    def forward(self, x):
        p = (x > x.max() - 0.01).float()  # the brightest class is the brain
        if self.cut_half:
            p[..., 3 * p.shape[2] // 4:, :, :] = 0.0
        return torch.cat([1 - p, p], dim=1)


def ball(shape, centre, radius):
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return r2 <= radius ** 2


def test_net_normalize_matches_training_statistics():
    x = torch.linspace(-5, 20, 1000)
    y = net_normalize(x, 0.0, 10.0)
    # clipped to [0, 1], then standardised and mapped to mean 0.449, std 0.226 exactly
    assert float(y.mean()) == pytest.approx(0.449, abs=1e-5)
    assert float(y.std()) == pytest.approx(0.226, abs=1e-5)
    assert torch.all(y[:200] == y[0])  # everything below low clips to one value


def test_largest_component_keeps_biggest_blob():
    m = np.zeros((7, 8, 9), bool)
    m[0:2, 0:2, 0:2] = True  # 8 voxels
    m[4:7, 4:8, 4:9] = True  # 60 voxels
    m[3, 3, 3] = True  # touches the big blob only diagonally: 26-connectivity joins it
    out = largest_component(m)
    assert out.sum() == 61 and not out[0, 0, 0]
    assert not largest_component(np.zeros((3, 3, 3), bool)).any()


def test_bbox_with_margin_scales_and_widens():
    small = torch.zeros(10, 10, 10)
    small[2:6, 3:8, 0:10] = 1
    box = bbox_with_margin(small, (20, 40, 10), margin=0.1)
    # axis 0: rows 2..5 -> centre 4 * 2 = 8, size 4 * 2 * 1.2 = 9.6 -> 10 -> [3, 13)
    assert box[0] == slice(3, 13)
    # axis 1: rows 3..7 -> centre 5.5 * 4 = 22, size 20 * 1.2 = 24 -> [10, 34)
    assert box[1] == slice(10, 34)
    assert box[2] == slice(0, 10)  # clipped to the image
    with pytest.raises(ImageError, match="too little foreground"):
        bbox_with_margin(torch.zeros(4, 4, 4), (8, 8, 8))


def test_deepbet_probability_recovers_bright_ball():
    shape = (40, 44, 36)
    brain = ball(shape, (20, 22, 18), 12)
    image = brain.float() * 100.0 + 5.0
    prob, box = deepbet_probability(image, ThresholdNet(), ThresholdNet(), **SMALL)
    dice = 2 * float(((prob > 0.5) & brain).sum()) / float((prob > 0.5).sum() + brain.sum())
    assert dice > 0.95  # nearest-exact resizing to 32^3 and back blurs the edge by ~1 voxel
    assert prob[: box[0].start].sum() == 0  # nothing outside the bounding box


def test_brain_mask_full_head_keeps_network_mask():
    shape = (40, 44, 36)
    brain = ball(shape, (20, 22, 18), 10)
    head = ball(shape, (20, 22, 18), 17)
    image = brain.float() * 100.0 + (head & ~brain).float() * 30.0  # dark "skull" around
    res = brain_mask(image, ThresholdNet(), ThresholdNet(), **SMALL)
    assert not res.skull_stripped  # foreground is ~5x the brain
    assert res.mask.dtype == torch.bool and res.mask.shape == shape
    assert float((res.mask & ~brain).sum()) / float(brain.sum()) < 0.1


def test_brain_mask_never_cuts_skull_stripped_brain():
    shape = (40, 44, 36)
    brain = ball(shape, (20, 22, 18), 12)
    image = brain.float() * 100.0
    cut = ThresholdNet(cut_half=True)  # a network that misses a cap of the brain
    res = brain_mask(image, cut, ThresholdNet(), **SMALL)
    assert res.skull_stripped
    assert bool(res.mask[brain].all())
    strict = brain_mask(image, cut, ThresholdNet(), mode="always", **SMALL)
    assert not bool(strict.mask[brain].all())  # without the safeguard brain is lost


def test_brain_mask_never_mode_and_errors():
    shape = (20, 21, 22)
    brain = ball(shape, (10, 10, 11), 6)
    res = brain_mask(brain.float() * 3.0, None, None, mode="never")
    assert torch.equal(res.mask, brain)
    with pytest.raises(ImageError, match="mode: expected 'auto', 'always' or 'never'; got 'sometimes'"):
        brain_mask(brain.float(), None, None, mode="sometimes")
    with pytest.raises(ImageError, match="expected deepbet's two networks; got None"):
        brain_mask(brain.float(), None, None)
    with pytest.raises(ImageError, match="expected an \\(X, Y, Z\\) image"):
        brain_mask(torch.zeros(4, 4), None, None, mode="never")
    with pytest.raises(ImageError, match="the mask is empty"):
        brain_mask(torch.zeros(8, 8, 8), None, None, mode="never")
    assert not foreground(torch.zeros(5, 6, 7)).any()


@pytest.mark.realdata
def test_deepbet_on_skull_stripped_real_t1_keeps_all_brain(shared_data):
    from vbmkit.io.nifti import load_volume
    from vbmkit.io.weights import load_brain_extraction_models

    vol = load_volume(shared_data / "segref" / "nii2mesh_bet_T1.nii.gz")
    nets = load_brain_extraction_models("cpu")
    res = brain_mask(vol.data, nets.model, nets.bbox_model)
    fg = torch.from_numpy(foreground(vol.data))
    assert res.skull_stripped
    assert bool(res.mask[fg].all())  # nothing of the given brain is cut
    ml = float(res.mask.sum()) * vol.grid.voxel_volume_ml
    assert 1100 < ml < 2000  # an adult brain (the image's own foreground is ~1520 mL)
