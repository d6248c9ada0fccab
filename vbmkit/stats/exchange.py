"""Draws of the null transforms: permutations (within exchangeability blocks) and sign flips.

A transform j maps a residual vector e to ``e_j[i] = signs[j, i] * e[perms[j, i]]``. Row 0 is
always the identity (all signs +1), so the observed statistic is the first of the null
distribution (Winkler et al. 2014, NeuroImage 92: 381-397).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from vbmkit.errors import ConfigError
from vbmkit.stats.permutation import all_permutations, draw_permutations, effective_permutations

SCHEMES = ("permute", "flip")
#: Exhaustive sign flipping is enumerated up to 2^EXACT_MAX_UNITS transforms.
EXACT_MAX_UNITS = 24


def check_blocks(blocks: np.ndarray | torch.Tensor | None, n_subjects: int) -> np.ndarray | None:
    """Exchangeability blocks as an (N,) int64 array of block codes (0, 1, ...), or None.

    Raises
    ------
    ConfigError
        When ``blocks`` is not one label per subject.
    """
    if blocks is None:
        return None
    arr = np.asarray(blocks.cpu() if isinstance(blocks, torch.Tensor) else blocks)
    if arr.ndim != 1 or arr.shape[0] != n_subjects:
        raise ConfigError(f"blocks: expected one block label per subject, shape ({n_subjects},); got shape "
                          f"{arr.shape}")
    return np.unique(arr, return_inverse=True)[1].astype(np.int64)


def draw_transforms(n_subjects: int, n_permutations: int, *, scheme: str = "permute",
                    blocks: np.ndarray | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Identity first, then random (or all) permutations or sign flips.

    Parameters
    ----------
    n_subjects : int
        N.
    n_permutations : int
        Transforms requested, identity included.
    scheme : {"permute", "flip"}
        ``permute``: shuffle subjects (within each block when ``blocks`` is given);
        ``flip``: multiply residuals by random signs (one sign per subject, or per whole block
        when ``blocks`` is given, e.g. the two rows of a paired design).
    blocks : numpy.ndarray, shape (N,), optional
        Block codes from :func:`check_blocks`.
    seed : int
        Seed of the ``torch.Generator``.

    Returns
    -------
    perms : torch.Tensor, shape (J, N), int64
    signs : torch.Tensor, shape (J, N), float64 (+1 / -1)
    exhaustive : bool
        True when every distinct transform is run once (then ``J`` may be below the request:
        N! permutations without blocks, ``2^units`` sign flips).
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme: expected one of {', '.join(SCHEMES)}; got {scheme!r}")
    if n_permutations < 2:
        raise ConfigError(f"n_permutations: expected at least 2 (identity included); got {n_permutations}")
    n = n_subjects
    gen = torch.Generator().manual_seed(int(seed))
    if scheme == "flip":
        units = blocks if blocks is not None else np.arange(n)
        n_units = int(units.max()) + 1
        exhaustive = n_units <= EXACT_MAX_UNITS and 2 ** n_units <= n_permutations
        if exhaustive:
            if 2 ** n_units < n_permutations:
                warnings.warn(f"n_permutations {n_permutations}: only {2 ** n_units} distinct sign flips of "
                              f"{n_units} units; using all of them (exact test)", stacklevel=3)
            codes = torch.arange(2 ** n_units)[:, None]
            bits = (codes >> torch.arange(n_units)[None]) & 1  # row 0: no flip
        else:
            bits = torch.randint(0, 2, (n_permutations, n_units), generator=gen)
            bits[0] = 0
        unit_signs = 1.0 - 2.0 * bits.double()
        signs = unit_signs[:, torch.from_numpy(units)]
        perms = torch.arange(n).expand(signs.shape[0], n).clone()
        return perms, signs, exhaustive
    if blocks is None:
        j, exhaustive = effective_permutations(n, n_permutations)
        if exhaustive:
            if j < n_permutations:
                warnings.warn(f"n_permutations {n_permutations}: only {j} distinct permutations of {n} subjects; "
                              "using all of them (exact test)", stacklevel=3)
            perms = all_permutations(n)
        else:
            perms = draw_permutations(n, n_permutations, seed=seed)
        return perms, torch.ones(perms.shape, dtype=torch.float64), exhaustive
    members = [torch.from_numpy(np.flatnonzero(blocks == b)) for b in range(int(blocks.max()) + 1)]
    if all(math.factorial(len(m)) == 1 for m in members):
        raise ConfigError("blocks: every block has one subject, so permuting within blocks changes nothing; "
                          "expected blocks of at least 2 subjects (or scheme='flip' to flip whole blocks)")
    perms = torch.arange(n).expand(n_permutations, n).clone()
    for j in range(1, n_permutations):
        for m in members:
            perms[j, m] = m[torch.randperm(len(m), generator=gen)]
    return perms, torch.ones(perms.shape, dtype=torch.float64), False
