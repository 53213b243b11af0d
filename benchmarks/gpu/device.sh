#!/usr/bin/env bash
# One device call of the GPU measurements (issue #5); benchmarks/gpu/prepare.sh says which.
# Calls that bring a part of onnxruntime-gpu only report what has arrived. Once every part in
# .gpu/ort.parts is there it installs onnxruntime-gpu and the carried wheels into /tmp/site
# (kept for a rerun on the same machine), points the loader at the CUDA and cuDNN libraries
# of the device's nvidia-* packages, and measures, writing everything under $OUT:
#   ort_gpu.json      ONNX Runtime alone, CUDA and CPU providers, batch 1/8/32 (infer_gpu.py)
#   service_gpu.json  the service on CUDA: overhead, batched vs unbatched (infer_compare.py)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
missing=()
while read -r part; do [ -f ".gpu/$part" ] || missing+=("$part"); done < .gpu/ort.parts
if [ "${#missing[@]}" -gt 0 ]; then
  echo "parts here: $(cd .gpu && ls ort.txz.?? | tr '\n' ' '); still to come: ${missing[*]}"
  exit 0
fi
site=/tmp/site
if [ ! -f "$site/.ready" ]; then
  parts=$(sed 's#^#.gpu/#' .gpu/ort.parts)
  # shellcheck disable=SC2086
  sum=$(cat $parts | sha256sum | cut -d' ' -f1)
  if [ "$sum" != "$(cat .gpu/ort.sha256)" ]; then
    echo "onnxruntime-gpu parts do not add up: sha256 $sum, expected $(cat .gpu/ort.sha256)"
    exit 3
  fi
  mkdir -p "$site"
  # shellcheck disable=SC2086
  cat $parts | xz -d -T0 | tar -x -C "$site" || exit 3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .gpu/wheels/*.whl || exit 3
  touch "$site/.ready"
fi
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
# onnxruntime-gpu loads libcublas, libcudnn, ... by name; they sit in the nvidia-* packages.
nvidia_libs=$(python3 -c 'import glob, site; print(":".join(sorted(
    d for root in site.getsitepackages() for d in glob.glob(root + "/nvidia/*/lib"))))')
export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi | tee "$OUT/nvidia-smi.txt"
python3 -c 'import onnxruntime as o; print(o.__file__, o.__version__, o.get_available_providers())'
python3 benchmarks/infer_gpu.py --model .gpu/model.onnx --json "$OUT/ort_gpu.json" \
  2>&1 | tee "$OUT/ort_gpu.log"
python3 benchmarks/infer_compare.py --model .gpu/model.onnx --arm gpu=. --device cuda \
  --rounds 3 --seconds 3 --json "$OUT/service_gpu.json" 2>&1 | tee "$OUT/service_gpu.log"
