"""``vbmkit stack``: maps -> a subject x voxel store (zarr) for GLMs larger than memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import handle_errors


@handle_errors
def app_command(
    images: Annotated[list[str], typer.Argument(help="Maps: files, globs, or vbmkit / CAT12 / deepmriprep output "
                                                "folders.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Store folder (created; zarr).", show_default=False)],
    map_kind: Annotated[str, typer.Option("--map", help="Map kind to take from output folders.")] = "s6mwp1",
    mask_threshold: Annotated[float, typer.Option("--mask-threshold", help="Mean-map threshold of the mask.")] = 0.1,
    float16: Annotated[bool, typer.Option("--float16", help="Store float16 (half the size, ~3 digits).")] = False,
    subject_chunk: Annotated[int, typer.Option("--subject-chunk", min=1, help="Subjects per chunk (buffered "
                                                                                  "while writing).")] = 64,
    voxel_chunk: Annotated[int, typer.Option("--voxel-chunk", min=1, help="Voxels per chunk.")] = 65536,
) -> None:
    """Write maps as one chunked subject x voxel array (zarr) with their IDs, sources, checksums,
    grid and mask, so that `vbmkit glm` can stream voxel blocks of studies larger than memory."""
    from vbmkit.io.maps import find_maps
    from vbmkit.io.store import open_store, write_store

    paths = find_maps(images, kind=map_kind)
    write_store(paths, out, mask_threshold=mask_threshold, dtype="float16" if float16 else "float32",
                subject_chunk=subject_chunk, voxel_chunk=voxel_chunk)
    store = open_store(out)
    n, v = store.shape
    typer.echo(f"{n} subjects x {v} voxels -> {out}")
