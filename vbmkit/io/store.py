"""The subject x voxel store: N maps under a mask as one chunked on-disk array (zarr).

A GLM of 40,000 subjects x 500,000 voxels (80 GB in float32) does not fit in memory; from the
store it is read one voxel block at a time. Layout of a store folder (a zarr v3 group)::

    data    (N, V) float32 (or float16), chunks (subject_chunk, voxel_chunk): row n = subject n,
            column v = the v-th voxel of ``mask`` in C order of the RAS grid (as ``load_maps``)
    mask    (X, Y, Z) uint8, the RAS mask on the maps' grid
    attrs   subjects (IDs), sources (paths), sha256 (of each source file), affine (RAS, 4 x 4),
            stored_affine (as in the first file), shape, mask_rule, dtype, vbmkit_version

Writing reads every map twice (the mean-map mask, then the values), buffering
``subject_chunk`` rows at a time so that each chunk is written once. NaN voxels ("no data",
as SPM writes them) fail the mask rule; they never enter the store.

A store can also grow: :func:`create_store` makes an empty one with a fixed mask and
:func:`append_maps` adds maps as they are made (``vbmkit preprocess --store``); a subject
appended again with another checksum has its row replaced. The subject list is written after
the rows, so rows beyond it (an append cut short) are not part of the store and are written
over by the next append.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbmkit import __version__
from vbmkit.errors import ConfigError, ImageError
from vbmkit.io.maps import check_grids
from vbmkit.io.nifti import load_grid, load_map
from vbmkit.io.ownership import claim
from vbmkit.io.records import sha256
from vbmkit.space import Grid

DTYPES = {"float32": np.float32, "float16": np.float16}


def _values(path: Path) -> np.ndarray:
    return load_map(path, warn=False).data.numpy().reshape(-1)


def _create_arrays(owned, mask: np.ndarray, n: int, *, dtype: str, chunks: tuple[int, int]):
    """Start the claimed folder's write and create the (N, V) ``data`` array, chunked along voxels,
    and the 3-D ``mask`` array; returns (group, data)."""
    import zarr  # heavy: only when a store is written or read

    owned.start()
    owned.register("zarr.json", "data/", "mask/")
    v = int(mask.sum())
    root = zarr.open_group(str(owned.path), mode="w")
    data = root.create_array("data", shape=(n, v), dtype=DTYPES[dtype],
                             chunks=(min(chunks[0], n) if n else chunks[0], min(chunks[1], v)), fill_value=0)
    root.create_array("mask", data=mask.astype(np.uint8), chunks=mask.shape)
    return root, data


def write_store(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, subjects: Sequence[str] | None = None,
                mask: np.ndarray | None = None, mask_threshold: float = 0.1, dtype: str = "float32",
                subject_chunk: int = 64, voxel_chunk: int = 65536,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Write N maps as a subject x voxel store in the folder ``out`` (claimed as ``vbmkit stack``).

    Parameters
    ----------
    paths : sequence of path
        3-D maps on one grid (checked from the headers first).
    subjects : sequence of str, optional
        One ID per map (default: the file names without the image suffix).
    mask : (X, Y, Z) bool ndarray, optional
        RAS mask; default: mean map > ``mask_threshold`` with every map finite there.
    dtype : {"float32", "float16"}
        Storage type (float16 halves the size; values keep about 3 significant digits).
    subject_chunk, voxel_chunk : int
        Chunk shape; ``subject_chunk`` rows are buffered in memory while writing
        (``subject_chunk x V x 4`` bytes).
    progress : callable(done, total), optional

    Returns
    -------
    Path
        ``out``.
    """

    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageError("stack: expected at least one map; got none")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {sorted(DTYPES)}; got {dtype!r}")
    if subject_chunk < 1 or voxel_chunk < 1:
        raise ConfigError(f"chunks: expected positive sizes; got {subject_chunk} x {voxel_chunk}")
    ids = [str(s) for s in subjects] if subjects is not None else [p.name.split(".")[0] for p in paths]
    if len(ids) != len(paths) or len(set(ids)) != len(ids):
        raise ConfigError(f"subjects: expected {len(paths)} distinct IDs, one per map; got {len(set(ids))} distinct")
    grid = check_grids(paths)
    n, total = len(paths), 2 * len(paths)
    done = itertools.count(1)

    def tick() -> None:
        if progress is not None:
            progress(next(done), total)

    if mask is None:
        mean = np.zeros(grid.n_voxels, dtype=np.float64)
        finite = np.ones(grid.n_voxels, dtype=bool)
        for p in paths:
            v = _values(p)
            finite &= np.isfinite(v)
            mean += np.nan_to_num(v)
            tick()
        flat = finite & (mean / n > mask_threshold)
        rule = f"mean > {mask_threshold} and finite in every map"
    else:
        flat = np.asarray(mask, dtype=bool).reshape(-1)
        if flat.size != grid.n_voxels:
            raise ImageError(f"mask: expected {grid.shape} voxels; got {np.shape(mask)}")
        rule = "given mask"
        for _ in range(n):
            next(done)
    v = int(flat.sum())
    if v == 0:
        raise ImageError(f"mask: expected voxels where the mean of {n} maps exceeds {mask_threshold}; none does")
    with claim(out, command="stack") as owned:
        root, data = _create_arrays(owned, flat.reshape(grid.shape), n, dtype=dtype, chunks=(subject_chunk, voxel_chunk))
        sums = []
        for start in range(0, n, subject_chunk):
            block = np.empty((min(subject_chunk, n - start), v), dtype=np.float32)
            for k, p in enumerate(paths[start:start + block.shape[0]]):
                values = _values(p)[flat]
                if not np.isfinite(values).all():
                    raise ImageError(f"{p}: expected finite values inside the mask; "
                                     f"{int((~np.isfinite(values)).sum())} NaN/Inf voxels there")
                block[k] = values
                sums.append(sha256(p))
                tick()
            data[start:start + block.shape[0]] = block.astype(DTYPES[dtype])
        root.attrs.update({"subjects": ids, "sources": [str(p.resolve()) for p in paths], "sha256": sums,
                           "affine": grid.affine.tolist(), "shape": list(grid.shape),
                           "stored_affine": load_grid(paths[0], canonical=False).affine.tolist(),
                           "mask_rule": rule, "dtype": dtype, "vbmkit_version": __version__})
        owned.finish()
    return Path(out)


def write_store_rows(rows: Iterable[np.ndarray], out: str | os.PathLike, *, subjects: Sequence[str], grid: Grid,
                     mask: np.ndarray, sources: Sequence[str] | None = None, stored_affine: np.ndarray | None = None,
                     dtype: str = "float32", subject_chunk: int = 64, voxel_chunk: int = 65536) -> Path:
    """Write a store from blocks of rows already under a mask (simulations, other pipelines).

    Parameters
    ----------
    rows : iterable of (k, V) float ndarray
        Consecutive subjects' masked values, ``V = mask.sum()``; in total one row per subject.
        Blocks of ``subject_chunk`` rows write each chunk once.
    subjects : sequence of str
        N distinct IDs.
    grid : Grid
        The RAS grid of ``mask``.
    mask : (X, Y, Z) bool ndarray
    sources : sequence of str, optional
        Where each row came from (default: the IDs); no checksums are recorded.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ConfigError, ImageError
        Bad dtype or chunks, duplicate IDs, a block of the wrong width, non-finite values, or
        fewer / more rows than subjects.
    """

    ids = [str(s) for s in subjects]
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {sorted(DTYPES)}; got {dtype!r}")
    if subject_chunk < 1 or voxel_chunk < 1 or len(set(ids)) != len(ids) or not ids:
        raise ConfigError(f"store: expected positive chunks and distinct IDs; got chunks {subject_chunk} x "
                          f"{voxel_chunk}, {len(set(ids))} distinct of {len(ids)} IDs")
    flat = np.asarray(mask, dtype=bool)
    if flat.shape != tuple(grid.shape):
        raise ImageError(f"mask: expected shape {tuple(grid.shape)}; got {flat.shape}")
    n, v = len(ids), int(flat.sum())
    with claim(out, command="stack") as owned:
        root, data = _create_arrays(owned, flat, n, dtype=dtype, chunks=(subject_chunk, voxel_chunk))
        start = 0
        for block in rows:
            block = np.asarray(block)
            if block.ndim != 2 or block.shape[1] != v or start + block.shape[0] > n:
                raise ImageError(f"rows: expected blocks of shape (k, {v}) adding up to {n} rows; got "
                                 f"{block.shape} at row {start}")
            if not np.isfinite(block).all():
                raise ImageError(f"rows {start}..{start + block.shape[0] - 1}: expected finite values")
            data[start:start + block.shape[0]] = block.astype(DTYPES[dtype])
            start += block.shape[0]
        if start != n:
            raise ImageError(f"rows: expected {n} rows, one per subject; got {start}")
        affine = stored_affine if stored_affine is not None else grid.affine
        root.attrs.update({"subjects": ids, "sources": list(sources) if sources is not None else ids,
                           "sha256": [""] * n, "affine": grid.affine.tolist(), "shape": list(grid.shape),
                           "stored_affine": np.asarray(affine).tolist(), "mask_rule": "given mask",
                           "dtype": dtype, "vbmkit_version": __version__})
        owned.finish()
    return Path(out)


@dataclass(frozen=True, eq=False)
class Store:
    """An opened store. ``block(a, b)`` reads voxels a..b of every subject as (N, b - a) float32."""

    path: Path
    subjects: list[str]
    sources: list[str]
    sha256: list[str]
    grid: Grid
    stored_affine: np.ndarray
    mask: np.ndarray
    _data: object

    @property
    def shape(self) -> tuple[int, int]:
        """(N subjects, V voxels)."""
        return len(self.subjects), int(self._data.shape[1])  # type: ignore[attr-defined]

    @property
    def voxel_chunk(self) -> int:
        return int(self._data.chunks[1])  # type: ignore[attr-defined]

    def block(self, start: int, stop: int) -> np.ndarray:
        """(N, stop - start) float32 values of voxels ``start:stop``."""
        return np.asarray(self._data[:len(self.subjects), start:stop], dtype=np.float32)  # type: ignore[index]


def open_store(path: str | os.PathLike) -> Store:
    """Open a store written by :func:`write_store`.

    Raises
    ------
    ImageError
        The folder is not a vbmkit store (missing arrays or metadata).
    """
    import zarr

    p = Path(path)
    try:
        root = zarr.open_group(str(p), mode="r")
        data, mask = root["data"], np.asarray(root["mask"][...], dtype=bool)
        attrs = dict(root.attrs)
        grid = Grid(tuple(attrs["shape"]), np.asarray(attrs["affine"], dtype=np.float64))
    except (KeyError, FileNotFoundError, ValueError, TypeError) as exc:
        raise ImageError(f"store {p}: expected a vbmkit store (`vbmkit stack`); {type(exc).__name__}: {exc}") from None
    if int(mask.sum()) != data.shape[1]:
        raise ImageError(f"store {p}: the mask has {int(mask.sum())} voxels but the data {data.shape[1]} columns")
    if data.shape[0] < len(attrs["subjects"]):
        raise ImageError(f"store {p}: lists {len(attrs['subjects'])} subjects but holds {data.shape[0]} rows")
    return Store(path=p, subjects=list(attrs["subjects"]), sources=list(attrs["sources"]),
                 sha256=list(attrs["sha256"]), grid=grid, stored_affine=np.asarray(attrs["stored_affine"]),
                 mask=mask, _data=data)


def create_store(out: str | os.PathLike, *, grid: Grid, mask: np.ndarray, stored_affine: np.ndarray | None = None,
                 dtype: str = "float32", subject_chunk: int = 64, voxel_chunk: int = 65536) -> Path:
    """An empty store (no subjects yet) on ``grid`` under ``mask``, to grow with :func:`append_maps`.

    Parameters
    ----------
    grid : Grid
        RAS grid of the maps that will be appended.
    mask : (X, Y, Z) bool ndarray
        Voxels kept; fixed for the store's life (a GLM applies its own rule inside it).
    stored_affine : (4, 4) ndarray, optional
        Affine of the maps as stored on disk (default ``grid.affine``).
    dtype, subject_chunk, voxel_chunk
        As :func:`write_store`.

    Returns
    -------
    Path
        ``out``.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {sorted(DTYPES)}; got {dtype!r}")
    flat = np.asarray(mask, dtype=bool)
    if flat.shape != tuple(grid.shape) or not flat.any():
        raise ImageError(f"mask: expected shape {tuple(grid.shape)} with voxels in it; got {flat.shape}, "
                         f"{int(flat.sum())} voxels")
    with claim(out, command="stack") as owned:
        root, _ = _create_arrays(owned, flat, 0, dtype=dtype, chunks=(subject_chunk, voxel_chunk))
        affine = stored_affine if stored_affine is not None else grid.affine
        root.attrs.update({"subjects": [], "sources": [], "sha256": [], "affine": grid.affine.tolist(),
                           "shape": list(grid.shape), "stored_affine": np.asarray(affine).tolist(),
                           "mask_rule": "given mask (appended store)", "dtype": dtype,
                           "vbmkit_version": __version__})
        owned.finish()
    return Path(out)


def append_maps(out: str | os.PathLike, maps: Sequence[tuple[str, str | os.PathLike]]) -> dict[str, int]:
    """Add maps to a store made by :func:`create_store` (or :func:`write_store`).

    Parameters
    ----------
    maps : sequence of (subject ID, map path)
        Maps on the store's grid. A subject already stored with the same checksum is skipped;
        with another checksum (the map was made again) its row is replaced.

    Returns
    -------
    dict
        ``appended``, ``replaced`` and ``unchanged`` counts.

    Raises
    ------
    ImageError
        A map on another grid, or with NaN/Inf inside the store's mask (naming the file).
    ConfigError
        The same subject twice in ``maps``; ``out`` not written by ``vbmkit stack``.
    """
    import zarr

    ids = [str(i) for i, _ in maps]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"store {out}: expected distinct subject IDs to append; got {len(ids) - len(set(ids))} "
                          "repeated")
    store = open_store(out)
    counts = {"appended": 0, "replaced": 0, "unchanged": 0}
    if not maps:
        return counts
    with claim(out, command="stack") as owned:
        owned.start()
        root = zarr.open_group(str(owned.path), mode="r+")
        data = root["data"]
        attrs = dict(root.attrs)
        subjects, sources, sums = list(attrs["subjects"]), list(attrs["sources"]), list(attrs["sha256"])
        if data.shape[0] != len(subjects):  # rows of an append cut short
            data.resize((len(subjects), data.shape[1]))
        flat = store.mask.reshape(-1)
        dtype = DTYPES[attrs.get("dtype", "float32")]
        position = {s: k for k, s in enumerate(subjects)}
        new_rows: list[np.ndarray] = []
        for subject, path in maps:
            path = Path(path)
            digest = sha256(path)
            k = position.get(subject)
            if k is not None and sums[k] == digest:
                counts["unchanged"] += 1
                continue
            grid = load_grid(path)
            if grid.shape != store.grid.shape or not np.allclose(grid.affine, store.grid.affine, atol=1e-4):
                other = " with another affine" if grid.shape == store.grid.shape else ""
                raise ImageError(f"{path}: expected the grid of store {out} {store.grid.shape}; got {grid.shape}{other}")
            values = _values(path)[flat]
            if not np.isfinite(values).all():
                raise ImageError(f"{path}: expected finite values inside the store's mask; "
                                 f"{int((~np.isfinite(values)).sum())} NaN/Inf voxels there")
            if k is not None:
                data[k:k + 1] = values[None].astype(dtype)
                sources[k], sums[k] = str(path.resolve()), digest
                counts["replaced"] += 1
            else:
                new_rows.append(values.astype(dtype))
                subjects.append(subject)
                sources.append(str(path.resolve()))
                sums.append(digest)
                position[subject] = len(subjects) - 1
                counts["appended"] += 1
        if new_rows:
            data.append(np.stack(new_rows), axis=0)
        root.attrs.update({"subjects": subjects, "sources": sources, "sha256": sums})
        owned.finish(keep=owned.previous["files"] if owned.previous else ())
    return counts
