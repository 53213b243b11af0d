#!/usr/bin/env bash
# Prepare what a device session carries for the GPU measurements (issue #5), then print the
# calls to make. Run here, in a checkout with its .venv:  bash benchmarks/gpu/prepare.sh
#
# The device machine has Python 3.12 with PyTorch and the CUDA 13 / cuDNN 9 libraries as
# nvidia-* pip packages, but no onnxruntime-gpu, no kserve and no network, and one call
# carries at most 64 MiB. So one payload (a tar of the files below) travels in parts, one per
# call to the same warm machine, which keeps what earlier calls left (it is given back after
# 30 s idle: make the calls back to back). In .gpu/ (ignored by git):
#   payload.NN, payload.parts, payload.sha256   the parts, their names, the checksum
# and inside the payload:
#   ort.txz        onnxruntime-gpu for cp312 (its TensorRT provider left out)
#   wheels/        cp312 wheels synthloc needs beyond the device's own
#   kserve-wheels/ kserve and tritonclient[grpc] with what the device lacks of their needs
#   model.onnx     the benchmark detector (a fresh one: latency does not depend on weights)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ORT_VERSION=${ORT_VERSION:-1.31.1}
KSERVE=${KSERVE:-"kserve==0.21.0 tritonclient[grpc]==2.73.0"}
PART_MIB=${PART_MIB:-58}
# Packages the device image holds (benchmarks/gpu/README in KINDS.md terms, read 2026-11-17).
DEVICE_HAS="absl-py aiofiles aiohappyeyeballs aiohttp aiosignal anyio attrs certifi
charset-normalizer click filelock fsspec frozenlist grpcio h11 httpcore httpx idna jinja2
markupsafe mpmath multidict numpy packaging pandas pillow pip prometheus-client propcache psutil
pygments python-dateutil pytz pyyaml requests rich setuptools shellingham six sympy tabulate
tqdm typer typing-extensions tzdata urllib3 uvloop wheel wrapt yarl zipp ml-dtypes"
out=.gpu
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
download() {  # cp312 manylinux wheels into $1 of the requirements after it (--no-deps unless $DEPS)
  "$PY" -m pip download -q ${DEPS:---no-deps} --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
mkdir -p "$out" "$stage/wheels" "$stage/kserve-wheels" "$stage/ort"
# The versions this checkout runs with: the generated stubs check grpcio and protobuf.
mapfile -t pins < <("$PY" - <<'PYEOF'
from importlib.metadata import version
names = ("grpcio", "protobuf", "grpcio-health-checking", "grpcio-reflection", "pydicom")
for name in (*names, "pycocotools"):
    print(f"{name}=={version(name)}")
PYEOF
)
echo "synthloc's wheels: ${pins[*]}"
download "$stage/wheels" "${pins[@]}"
echo "kserve's wheels: $KSERVE (and what the device lacks of their requirements)"
# shellcheck disable=SC2086
DEPS=" " download "$stage/kserve-wheels" $KSERVE
for wheel in "$stage"/kserve-wheels/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]_' '[:lower:]-')
  if [ "$name" != protobuf ] && grep -qw -- "$name" <<<"$DEVICE_HAS"; then rm "$wheel"; fi
done
download "$stage/ort" "onnxruntime-gpu==$ORT_VERSION"
(cd "$stage/ort" && unzip -q onnxruntime_gpu-*.whl && rm onnxruntime_gpu-*.whl \
  onnxruntime/capi/libonnxruntime_providers_tensorrt.so)
echo "compressing onnxruntime-gpu $ORT_VERSION (a few minutes)"
tar -C "$stage/ort" -cf - . | xz -T0 -6 > "$stage/ort.txz"
rm -rf "$stage/ort"
"$PY" - "$stage" <<'PYEOF'
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from infer_latency import default_model

default_model(Path(sys.argv[1]))
PYEOF
# py-spy (a static binary, 2 MB in xz) for the GIL profile: it rides with the last part.
"$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_5_x86_64 \
  --platform manylinux1_x86_64 -d "$stage" "py-spy==${PYSPY_VERSION:-0.4.3}"
unzip -p "$stage"/py_spy-*.whl '*/scripts/py-spy' | xz -T0 -9 > "$out/py-spy.xz"
rm -f "$out"/payload.*
tar -C "$stage" -cf - ort.txz wheels kserve-wheels model.onnx \
  | tee >(sha256sum | cut -d' ' -f1 > "$out/payload.sha256") \
  | split -b "${PART_MIB}M" -d -a 2 - "$out/payload."
sleep 1  # the checksum's subshell finishes writing
(cd "$out" && ls payload.[0-9][0-9] > payload.parts)
echo
echo "Device calls, back to back on one warm machine (run status first; each carries one part):"
total=$(wc -l < "$out/payload.parts")
n=0
while read -r part; do
  n=$((n + 1))
  limit=60 extra=""
  [ "$n" -eq "$total" ] && limit=560 extra=", \".gpu/py-spy.xz\""
  echo "  run command='bash benchmarks/gpu/device.sh' timeout_s=$limit" \
    "carry=[\".gpu/payload.parts\", \".gpu/payload.sha256\", \".gpu/$part\"$extra]"
done < "$out/payload.parts"
