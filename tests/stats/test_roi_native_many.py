"""Several atlases carried into native space with one inversion equal one at a time."""

from __future__ import annotations

import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.stats.roi_native import native_labels, native_labels_many


def test_many_equals_one_at_a_time():
    gen = torch.Generator().manual_seed(0)
    shape = (9, 8, 7)
    a = torch.randint(0, 4, shape, generator=gen)
    b = torch.randint(0, 3, shape, generator=gen) * 10
    ijk = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij"), -1)
    field = 0.8 * ijk + torch.tensor([0.5, 0.3, 0.2])  # template voxel -> native voxel, scaled and shifted
    native_shape = (8, 7, 6)
    mask = torch.ones(native_shape, dtype=torch.bool)
    mask[0] = False
    many, failed = native_labels_many([a, b], field, native_shape, mask=mask)
    for atlas, got in zip((a, b), many, strict=True):
        want, f1 = native_labels(atlas, field, native_shape, mask=mask)
        assert torch.equal(got, want) and f1 == failed
    assert int((many[0][0] != 0).sum()) == 0 and int((many[0] > 0).sum()) > 0
    with pytest.raises(ImageError, match="expected at least one atlas"):
        native_labels_many([], field, native_shape)


def test_huge_ids_take_the_tuple_path():
    """Ids whose tuple cannot be packed into one int64 key (product of ranges >= 2^62)."""
    shape = (5, 6, 4)
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 3, shape, generator=gen) * 2 ** 32
    b = torch.randint(0, 3, shape, generator=gen) * 2 ** 32
    field = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij"), -1)
    many, _ = native_labels_many([a, b], field, shape)
    assert torch.equal(many[0], a) and torch.equal(many[1], b)  # identity field: labels unchanged
