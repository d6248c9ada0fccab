"""The wheel: every vbmkit package listed in pyproject.toml, and the atlases and example YAMLs
shipped as the data packages ``vbmkit._atlases`` and ``vbmkit._examples``."""

from __future__ import annotations

from pathlib import Path

import pytest
import setuptools

from vbmkit.errors import ResourceError
from vbmkit.io.resources import (
    atlas_dir,
    atlas_paths,
    describe_resource,
    example_yaml,
    template_path,
)

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
DATA_PACKAGES = {"vbmkit._atlases": "atlases", "vbmkit._examples": "examples"}


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_listed_packages_are_every_vbmkit_package_and_the_data_packages():
    """``packages`` is listed by hand (package-dir mapping excludes packages.find): a new
    subpackage missing from it would be left out of the wheel."""
    found = set(setuptools.find_packages(where=str(ROOT), include=["vbmkit*"]))
    assert set(_setuptools_config()["packages"]) == found | set(DATA_PACKAGES)


def test_data_packages_map_the_top_level_folders():
    config = _setuptools_config()
    assert config["package-dir"] == DATA_PACKAGES
    for package, folder in DATA_PACKAGES.items():
        assert (ROOT / folder / "__init__.py").is_file()
        assert config["package-data"][package]


def test_every_atlas_file_is_matched_by_the_package_data_globs():
    globs = _setuptools_config()["package-data"]["vbmkit._atlases"]
    files = {p for p in (ROOT / "atlases").rglob("*") if p.is_file() and p.suffix != ".py"
             and "__pycache__" not in p.parts}
    shipped = {p for g in globs for p in (ROOT / "atlases").glob(g)}
    assert files and files == shipped


def test_atlas_and_examples_are_found_as_package_resources():
    image, table = atlas_paths("lpba40")
    assert image.parent == atlas_dir() / "lpba40" and table.name == "lpba40_labels.csv"
    assert example_yaml("demo").read_text().strip()
    with pytest.raises(ResourceError, match="example 'nope': expected .*nope.yaml"):
        example_yaml("nope")


def test_resources_are_described_by_package_and_version(tmp_path):
    from importlib import metadata

    image, _ = atlas_paths("lpba40")
    assert describe_resource(image) == f"vbmkit {metadata.version('vbmkit')} (vbmkit/_atlases/lpba40/lpba40.nii.gz)"
    assert describe_resource(template_path()) == (f"deepmriprep {metadata.version('deepmriprep')} "
                                                  "(deepmriprep/data/templates/Template_4_GS.nii.gz)")
    own = tmp_path / "mine.nii.gz"
    assert describe_resource(own) == str(own)
