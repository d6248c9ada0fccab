"""vbmkit: voxel-based morphometry in PyTorch.

Preprocessing (T1 -> tissue maps -> modulated, warped, smoothed maps on CAT12's 1.5 mm grid),
a GPU-batched voxel-wise GLM with subsample stability, LPBA40 ROI volumes and a comparison
with CAT12. Importing the package reads no files and imports no heavy dependencies.
"""

__version__ = "0.1.0"
