"""vbmkit: voxel-based morphometry in PyTorch.

Preprocessing (T1 -> tissue maps -> modulated, warped, smoothed maps on CAT12's 1.5 mm grid),
a GPU-batched voxel-wise GLM with subsample stability, LPBA40 ROI volumes and a comparison
with CAT12. Importing the package reads no files and imports no heavy dependencies.
"""

__version__ = "0.1.0"

#: The Python API (:mod:`vbmkit.api`), imported on first use so that ``import vbmkit`` stays light.
_API = ("GLM", "ContrastResult", "PreprocessResult", "Study", "preprocess_t1", "roi_volumes")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        # import_module, not `from vbmkit import api`: the API sits above the workflows, and a
        # static import here would make every vbmkit module (the pure core too) depend on it
        import importlib

        return getattr(importlib.import_module("vbmkit.api"), name)
    raise AttributeError(f"module 'vbmkit' has no attribute {name!r}")
