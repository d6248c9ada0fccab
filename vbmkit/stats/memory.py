"""Upfront memory estimates of the subsample and permutation engines (bytes, no allocation).

The GLM engines stream the voxels in blocks sized to a budget (:mod:`vbmkit.stats.chunking`),
but some memory does not shrink with the block: the K subsample draws and the weighted
design built from them (:func:`vbmkit.stats.subsample.draw_subsamples`,
:func:`vbmkit.stats.glm.prepare_weighted`), the permutation index matrix and the null
distributions (:func:`vbmkit.stats.permutation.freedman_lane`), and the per-voxel summary
maps. :func:`glm_memory` adds these up from the sizes alone, so a request that cannot fit is
refused before any image is read. The counts follow the code; object overheads and
temporaries of a few small (P x P) matrices are rounded up, so the estimate errs high by at
most a few tens of percent. The data matrix Y (N x V float32) is not counted: it does not
depend on the number of subsamples or permutations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vbmkit.stats.permutation import CACHE_BYTES, effective_permutations, permutation_batch

#: Bytes per draw and subject while drawing (random keys, their copy and argsort: float64/int64).
DRAW_BYTES_PER_ENTRY = 33
#: Host bytes per random permutation beyond its N int64 entries (one small tensor per draw).
PERMUTATION_OBJECT_BYTES = 300


@dataclass(frozen=True)
class GlmMemory:
    """Memory of one GLM run's subsample and permutation engines, in bytes.

    Attributes
    ----------
    subsample_host : int
        Peak host memory of the K draws (K, N) and of the weighted design built from them
        (float64 (K, P, N) matrices); 0 without subsamples.
    permutation_host : int
        The (n_perm, N) int64 permutation matrix, its construction, and the float64 null
        distributions (n_perm per contrast) with their sorted copies; 0 without permutations.
    outputs : int
        Voxel-wise result maps (median, IQR, stability per contrast; observed statistic and
        p_FWE per contrast), host and device copies.
    block_fixed : int
        Bytes of one voxel block that do not scale with its width (weighted design or cached
        permutation rows on the device), the larger of the two engines.
    block_per_voxel : int
        Bytes per voxel of a block, the larger of the two engines.
    n_permutations : int
        Permutations that will run (``min(requested, N!)``).
    """

    subsample_host: int
    permutation_host: int
    outputs: int
    block_fixed: int
    block_per_voxel: int
    n_permutations: int

    def block_bytes(self, budget: int, n_voxels: int, *, max_width: int | None = None) -> int:
        """Bytes one voxel block takes under ``budget`` (at least the fixed part and one voxel).

        Mirrors :func:`vbmkit.stats.chunking.chunk_size`: width = (budget - fixed) / per voxel,
        at most ``n_voxels`` and ``max_width``.
        """
        if self.block_per_voxel == 0:
            return self.block_fixed
        width = max(1, (budget - self.block_fixed) // self.block_per_voxel)
        width = min(width, n_voxels, max_width if max_width is not None else n_voxels)
        return self.block_fixed + max(1, width) * self.block_per_voxel

    @property
    def block_minimum(self) -> int:
        """Smallest budget that holds one voxel block (the fixed part and one voxel)."""
        return self.block_fixed + self.block_per_voxel if self.block_per_voxel else self.block_fixed


def format_bytes(n: float) -> str:
    """``1.2e12`` -> ``1,200 GB``; ``3.4e9`` -> ``3.4 GB``; ``5e6`` -> ``5 MB`` (decimal units)."""
    if n >= 10e9:
        return f"{n / 1e9:,.0f} GB"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    return f"{max(n, 1e3) / 1e3:.0f} kB"


def subsample_parts(n_subjects: int, n_columns: int, contrast_ranks: Sequence[int], k: int,
                    n_voxels: int) -> tuple[int, int, int, int]:
    """(host peak, block fixed, block per voxel, outputs) of K subsample fits, in bytes.

    Parameters
    ----------
    n_subjects, n_columns : int
        N and P of the design.
    contrast_ranks : sequence of int
        Rows Q of each contrast (1 for a t contrast).
    k : int
        Number of draws (0: none).
    n_voxels : int
        V, an upper bound of the voxels analysed.

    Notes
    -----
    Drawing holds float64 keys, a copy and an argsort, 33 bytes per draw and subject, and keeps
    the (K, N) bool weights. :func:`~vbmkit.stats.glm.prepare_weighted` holds float64 weights
    (8 K N), the weighted design and its triangular solve (2 x 8 K P N), their float32 copies
    (4 K P N + 4 K N), and per contrast (K, Q, P) float64 matrices. A voxel block holds the
    float32 design (4 K (P N + N)) and ``4 (2 N + K P + 4 K + sum K (2 Q + 3)) + 16 K C`` bytes per
    voxel (as :func:`~vbmkit.stats.glm.block_bytes_per_voxel` and
    :func:`~vbmkit.stats.subsample.fit_subsamples`). Outputs: (3, V) float32 per contrast on
    the device and on the host.
    """
    if k <= 0:
        return 0, 0, 0, 0
    n, p, c = n_subjects, n_columns, len(contrast_ranks)
    q_sum = sum(contrast_ranks)
    draw = DRAW_BYTES_PER_ENTRY * k * n
    prepare = 13 * k * n + 20 * k * p * n + 32 * k * p * p + 24 * k * p * q_sum
    host = k * n + max(draw, prepare)
    fixed = 4 * k * (p * n + n) + 4 * k * p * q_sum
    per_voxel = 4 * (2 * n + k * p + 4 * k + sum(k * (2 * q + 3) for q in contrast_ranks)) + 16 * k * c
    outputs = 2 * 12 * n_voxels * c
    return host, fixed, per_voxel, outputs


def permutation_parts(n_subjects: int, n_columns: int, contrast_ranks: Sequence[int], n_permutations: int,
                      n_voxels: int, *, batch: int = 128) -> tuple[int, int, int, int]:
    """(host peak, block fixed, block per voxel, outputs) of Freedman-Lane permutations, in bytes.

    ``n_permutations`` is the number that runs (see
    :func:`~vbmkit.stats.permutation.effective_permutations`). The (J, N) int64 index matrix
    and its construction (``16 N + PERMUTATION_OBJECT_BYTES`` per permutation), per contrast the
    null maxima (4 J on the device, 8 J float64 kept, 8 J sorted copy and 8 J ranks), the
    permutation rows ``M^T P_j R_z`` (cached whole when at most ``CACHE_BYTES``, else two
    batches), and per voxel ``4 (2 N + batch (P + 4))`` bytes (as ``freedman_lane``; the batch
    grows for few voxels, see :func:`~vbmkit.stats.permutation.permutation_batch`).
    Outputs: the observed statistic (float32) and p_FWE (float64) per contrast, V each.
    """
    if n_permutations <= 0:
        return 0, 0, 0, 0
    n, p, c, j = n_subjects, n_columns, len(contrast_ranks), n_permutations
    batch = permutation_batch(j, p, n_voxels, batch=batch)
    host = j * (16 * n + PERMUTATION_OBJECT_BYTES) + 28 * c * j
    stack = c * p * j * n * 4
    fixed = stack if stack <= CACHE_BYTES else min(batch, j) * p * n * 4 * 2
    per_voxel = 4 * (2 * n + min(batch, j) * (p + 4))
    outputs = 2 * 12 * n_voxels * c
    return host, fixed, per_voxel, outputs


def glm_memory(n_subjects: int, n_columns: int, contrast_ranks: Sequence[int], *, subsamples: int,
               permutations: int, n_voxels: int) -> GlmMemory:
    """Memory the subsample and permutation engines of one GLM run need (see :class:`GlmMemory`).

    Parameters
    ----------
    n_subjects, n_columns : int
        N and P of the design matrix.
    contrast_ranks : sequence of int
        Rows of each contrast matrix (1 for t, Q for F).
    subsamples : int
        K draws (0: none).
    permutations : int
        Requested permutations, identity included (0: none); capped at N! as the engine does.
    n_voxels : int
        V; an upper bound (e.g. the whole grid before masking) gives an upper estimate.

    Returns
    -------
    GlmMemory
    """
    j = effective_permutations(n_subjects, permutations)[0] if permutations > 0 else 0
    s_host, s_fixed, s_voxel, s_out = subsample_parts(n_subjects, n_columns, contrast_ranks, subsamples, n_voxels)
    p_host, p_fixed, p_voxel, p_out = permutation_parts(n_subjects, n_columns, contrast_ranks, j, n_voxels)
    # the engines run one after the other: a block holds one engine's buffers at a time
    if s_fixed + s_voxel >= p_fixed + p_voxel:
        fixed, voxel = s_fixed, s_voxel
    else:
        fixed, voxel = p_fixed, p_voxel
    return GlmMemory(subsample_host=s_host, permutation_host=p_host, outputs=s_out + p_out,
                     block_fixed=fixed, block_per_voxel=voxel, n_permutations=j)


#: Host bytes per supra-zero voxel of one exact TFCE pass (edge lists of up to 13 offsets,
#: the sparse graph and its spanning forest, int64/float64 work arrays); counted for all V.
TFCE_BYTES_PER_VOXEL = 560
#: Host bytes per grid voxel of one map's TFCE / cluster pass (padded float64 copy, int64 ids,
#: float64 output, int32 labels, bool masks).
MAP_BYTES_PER_GRID_VOXEL = 48


def map_permutation_parts(n_subjects: int, n_columns: int, contrast_ranks: Sequence[int], n_permutations: int,
                          n_voxels: int, grid_voxels: int) -> tuple[int, int, int, int]:
    """(host peak, block fixed, bytes per permutation of a block, outputs) of whole-map inference.

    Counts :func:`vbmkit.stats.map_permutation.permutation_inference`: the (J, N) int64
    permutations and float64 signs with the four float64 null maxima per contrast (host); on
    the device the centred data (4 N V) and ``|R_z y|^2`` (4 V); per permutation of a block
    the float32 transform rows (4 P' N) and ``z_j`` (4 P' V), four (V,) float32 temporaries and
    the float64 copy on the host (8 V), with ``P' = P``; one map at a time on the host for TFCE
    and clusters (``TFCE_BYTES_PER_VOXEL`` V + ``MAP_BYTES_PER_GRID_VOXEL`` G); outputs: five
    grid maps per contrast (stat float32, voxel/TFCE p and TFCE float64, labels int32).
    """
    if n_permutations <= 0:
        return 0, 0, 0, 0
    n, p, c, j, v, g = n_subjects, n_columns, len(contrast_ranks), n_permutations, n_voxels, grid_voxels
    host = 16 * j * n + 32 * c * j + TFCE_BYTES_PER_VOXEL * v + MAP_BYTES_PER_GRID_VOXEL * g
    fixed = 4 * n * v + 4 * v
    per_permutation = 4 * p * n + 4 * p * v + 16 * v + 8 * v
    outputs = 32 * g * c
    return host, fixed, per_permutation, outputs
