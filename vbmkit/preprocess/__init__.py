"""Pure tensor preprocessing steps (no file I/O): intensity, brain mask, affine, segmentation,
nonlinear registration, Jacobian modulation and smoothing. Tensors are (B, C, X, Y, Z) float32."""
