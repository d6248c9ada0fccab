#!/usr/bin/env bash
# Device checks on a CUDA machine, in one run (a lent GPU is billed by the minute):
#   1. the tests marked `gpu` (CPU and CUDA agree on the tensor cores);
#   2. benchmarks/preprocess_speed.py on CUDA: three subjects in one process, then 16 subjects over
#      4 processes sharing the GPU (issue 13, must-show 5: <= 5 s per subject in a batch); the maps and report of the first subject are copied to OUTDIR so
#      that benchmarks/device_agreement.py can compare them with a CPU run of the same T1;
#   3. benchmarks/demo_check.py (`vbmkit demo` with --device auto = CUDA: simulation,
#      preprocessing, GLM with 100 subsamples, ROIs, report);
#   4. benchmarks/glm_gpu.py (issue 2's GPU figures).
# Each step has its own time limit, so one slow step cannot take the others' output with it.
#
#   bash benchmarks/gpu_check.sh T1.nii.gz OUTDIR
#
# Python packages the machine lacks (nibabel, pydantic, deepbet, deepmriprep, nilearn) must be on
# PYTHONPATH already; the repository root is added here.
set -u
T1=${1:?usage: gpu_check.sh T1.nii.gz OUTDIR}
OUTDIR=${2:?usage: gpu_check.sh T1.nii.gz OUTDIR}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
nproc

echo "== 1. tests marked gpu"
timeout 100 $PY -m pytest -q -p no:cacheprovider -m gpu \
  tests/preprocess/test_segment_tissue.py tests/preprocess/test_variational.py \
  tests/stats/test_agreement_metrics.py tests/stats/test_cluster_inference.py tests/stats/test_glm_ols.py \
  tests/stats/test_permutation_fl.py tests/stats/test_qc_homogeneity.py tests/stats/test_roi_volumes.py \
  tests/stats/test_subsample_median.py tests/stats/test_tfce.py 2>&1 | tail -25

echo "== 2. preprocess_speed on CUDA"
rm -rf /tmp/vbmkit_speed_cuda
timeout 240 $PY benchmarks/preprocess_speed.py --input "$T1" --device cuda --repeat 3 --batch 16 --workers 4 --threads "$(nproc)" \
  --out /tmp/vbmkit_speed_cuda
for f in /tmp/vbmkit_speed_cuda/speed0/mri/mwp1speed0.nii* /tmp/vbmkit_speed_cuda/speed0/mri/p1speed0.nii* \
         /tmp/vbmkit_speed_cuda/speed0/report/*speed0*.json; do
  [ -f "$f" ] && cp "$f" "$OUTDIR/"
done

echo "== 3. demo_check (vbmkit demo on CUDA)"
timeout "${DEMO_TIMEOUT:-200}" $PY benchmarks/demo_check.py

echo "== 4. glm_gpu"
timeout "${GLM_TIMEOUT:-90}" $PY benchmarks/glm_gpu.py
echo "== done"
