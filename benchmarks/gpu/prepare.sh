#!/usr/bin/env bash
# Prepare what a device session carries for the GPU measurements (issue #5), then print the
# calls to make. Run here, in any checkout with its .venv:  bash benchmarks/gpu/prepare.sh
#
# The device machine has Python 3.12 with PyTorch and the CUDA 13 / cuDNN 9 libraries as
# nvidia-* pip packages, but no onnxruntime-gpu and no network. Its wheel (~250 MB) exceeds
# one call's 64 MiB, so it travels as xz parts, one per call to the same warm machine (a warm
# machine keeps what earlier calls left; it is given back after 30 s idle, so make the calls
# back to back). Everything lands in .gpu/ (ignored by git):
#   ort.txz.NN, ort.parts, ort.sha256   onnxruntime-gpu for cp312, split under PART_MIB MiB
#   wheels/                             cp312 wheels the service needs beyond the device's own
#   model.onnx                          the benchmark detector (latency does not need weights)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ORT_VERSION=${ORT_VERSION:-1.31.1}
PART_MIB=${PART_MIB:-56}
out=.gpu
mkdir -p "$out/wheels"
download() {  # cp312 manylinux wheels into $1, exact versions given after it
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
# The versions this checkout runs with: the generated stubs check grpcio and protobuf.
mapfile -t pins < <("$PY" - <<'PYEOF'
from importlib.metadata import version
for name in ("grpcio", "protobuf", "grpcio-health-checking", "grpcio-reflection", "pydicom"):
    print(f"{name}=={version(name)}")
PYEOF
)
echo "wheels: ${pins[*]}"
download "$out/wheels" "${pins[@]}"
if [ ! -f "$out/ort.sha256" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  download "$tmp" "onnxruntime-gpu==$ORT_VERSION"
  (cd "$tmp" && unzip -q onnxruntime_gpu-*.whl && rm onnxruntime_gpu-*.whl \
    onnxruntime/capi/libonnxruntime_providers_tensorrt.so)  # TensorRT: not used, not there
  echo "compressing onnxruntime-gpu $ORT_VERSION (a few minutes)"
  tar -C "$tmp" -cf - . | xz -T0 -6 > "$out/ort.txz"
  split -b "${PART_MIB}M" -d -a 2 "$out/ort.txz" "$out/ort.txz."
  (cd "$out" && sha256sum ort.txz | cut -d' ' -f1 > ort.sha256 && rm ort.txz)
  (cd "$out" && ls ort.txz.?? > ort.parts)
fi
if [ ! -f "$out/model.onnx" ]; then
  "$PY" - <<'PYEOF'
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from infer_latency import default_model

default_model(Path(".gpu"))
PYEOF
fi
echo
echo "Device calls, back to back on one warm machine (each carries one part; run status first):"
n=0
total=$(wc -l < "$out/ort.parts")
while read -r part; do
  n=$((n + 1))
  carry="\".gpu/ort.parts\", \".gpu/$part\""
  [ "$n" -eq "$total" ] && carry="$carry, \".gpu/ort.sha256\", \".gpu/wheels\", \".gpu/model.onnx\""
  echo "  run command='bash benchmarks/gpu/device.sh' carry=[$carry] timeout_s=$([ "$n" -eq "$total" ] && echo 540 || echo 60)"
done < "$out/ort.parts"
