"""Exceptions raised for bad user input.

Every message says what was given, what was expected and what came, and names the file,
column or parameter at fault. All classes derive from :class:`VbmkitError`, itself a
``ValueError``, so the CLI can print them cleanly and exit with a non-zero status.
"""

from __future__ import annotations


class VbmkitError(ValueError):
    """Base class of all user-facing vbmkit errors."""


class ImageError(VbmkitError):
    """An image file is unreadable, of the wrong dimensionality, or holds NaN/Inf."""


class GridMismatchError(ImageError):
    """Two images that must share a voxel grid do not (shape or affine differ)."""


class CovariateError(VbmkitError):
    """The covariate table is missing a column, holds bad values or duplicate IDs."""


class DesignError(VbmkitError):
    """The design matrix or a contrast cannot be estimated (rank, row space, too few subjects)."""


class ConfigError(VbmkitError):
    """A study YAML or command option is invalid."""


class RoiTableError(VbmkitError):
    """A CAT12 / deepmriprep ROI table is not in a layout vbmkit reads."""


class ResourceError(VbmkitError):
    """A template, atlas or weight file that ships with a package is missing."""
