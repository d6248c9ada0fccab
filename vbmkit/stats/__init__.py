"""Pure tensor statistics (no file I/O): design checks, batched GLM, subsampling, inference
(FDR, permutation, clusters), ROI volumes and agreement metrics."""
