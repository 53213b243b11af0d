#!/usr/bin/env bash
# One device call of the GPU measurements (issue #5); benchmarks/gpu/prepare.sh says which.
# A call that brings one more part only reports what has arrived. Once every part named in
# .gpu/payload.parts is there it unpacks the payload, installs onnxruntime-gpu and the wheels
# into /tmp/site and kserve into /tmp/kserve-site (kept for a rerun on the same machine),
# points the loader at the CUDA and cuDNN libraries of the device's nvidia-* packages, and
# measures, writing under $OUT (each step goes on if an earlier one failed):
#   ort_gpu.json     ONNX Runtime alone on CUDA, batch 1/8/32 (infer_gpu.py)
#   service_gpu.json the service on CUDA: overhead, batched vs unbatched, with a queue delay
#                    and as 4 processes, and the echo server's ceiling (infer_compare.py)
#   kserve_gpu.json  the service (defaults, a queue delay, 4 processes) vs KServe's
#                    ModelServer, all on CUDA (kserve_side_by_side.py)
# DEVICE=cpu runs the same steps on the CPU provider: a rehearsal on any machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
# The checkout arrives without build outputs: synthloc's C helpers, which the service's input
# normalisation imports, are compiled here for this Python (a second; the first call shows
# whether that works while the other parts are still on their way).
built=$(python3 benchmarks/gpu/build_native.py synthloc._native 2>"$OUT/build_native.log") || {
  echo "could not compile synthloc._native:"; tail -20 "$OUT/build_native.log"; exit 3; }
echo "built $built for $(python3 -V)"
missing=()
while read -r part; do [ -f ".gpu/$part" ] || missing+=("$part"); done < .gpu/payload.parts
if [ "${#missing[@]}" -gt 0 ]; then
  echo "parts here: $(cd .gpu && ls payload.[0-9][0-9] | tr '\n' ' ')still to come: ${missing[*]}"
  exit 0
fi
site=/tmp/site kserve_site=/tmp/kserve-site payload=/tmp/payload
if [ ! -f "$site/.ready" ]; then
  parts=$(sed 's#^#.gpu/#' .gpu/payload.parts)
  # shellcheck disable=SC2086
  sum=$(cat $parts | sha256sum | cut -d' ' -f1)
  if [ "$sum" != "$(cat .gpu/payload.sha256)" ]; then
    echo "the parts do not add up: sha256 $sum, expected $(cat .gpu/payload.sha256)"
    exit 3
  fi
  mkdir -p "$site" "$kserve_site" "$payload"
  # shellcheck disable=SC2086
  cat $parts | tar -x -C "$payload" || exit 3
  xz -d -T0 < "$payload/ort.txz" | tar -x -C "$site" || exit 3
  pip_install() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$@"; }
  pip_install "$site" "$payload"/wheels/*.whl || exit 3
  pip_install "$kserve_site" "$payload"/kserve-wheels/*.whl || echo "kserve did not install"
  touch "$site/.ready"
fi
export PYTHONPATH="$site:$repo" PYTHONUNBUFFERED=1
# onnxruntime-gpu loads libcublas, libcudnn, ... by name; they sit in the nvidia-* packages.
nvidia_libs=$(python3 -c 'import glob, site; print(":".join(sorted(
    d for root in site.getsitepackages() for d in glob.glob(root + "/nvidia/*/lib"))))')
export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi | tee "$OUT/nvidia-smi.txt" || echo "no nvidia-smi here"
python3 -c 'import onnxruntime as o; print(o.__file__, o.__version__, o.get_available_providers())'
model=$payload/model.onnx
# The CPU provider's figures were measured on the device before (README); only CUDA's here.
python3 benchmarks/infer_gpu.py --model "$model" --providers "$DEVICE" --repeats 40 \
  --json "$OUT/ort_gpu.json" \
  2>&1 | tee "$OUT/ort_gpu.log"
# Three arms of this checkout: the defaults (batches padded to powers of two, a session per
# size; a free worker takes what is queued at once), a batch's first request waiting up to
# 2 ms for company (--max-queue-delay-ms), and 4 server processes on the port (--processes),
# for a host where one Python process is the limit. Every server warms the 512-pixel shapes
# the load sends before it serves; the load comes from 4 client processes (loadgen.py), and
# the echo server's rate under it shows what the host's Python gRPC can answer at all.
python3 benchmarks/infer_compare.py --model "$model" --arm padded=. --arm delay2=. \
  --arm procs4=. --arm-args delay2='--max-queue-delay-ms 2' --arm-args procs4='--processes 4' \
  --serve-args '--warm-sizes 512' --device "$DEVICE" --client-processes 4 \
  --rounds "${ROUNDS:-3}" --seconds 3 --json "$OUT/service_gpu.json" \
  2>&1 | tee "$OUT/service_gpu.log"
# KServe needs protobuf < 7, synthloc >= 7: each runs with its own folder first.
printf '#!/bin/sh\nPYTHONPATH=%s:%s exec python3 -m synthloc "$@"\n' "$site" "$repo" > /tmp/synthloc
chmod +x /tmp/synthloc
PYTHONPATH="$kserve_site:$site" python3 benchmarks/kserve_side_by_side.py \
  --synthloc /tmp/synthloc --model "$model" --device "$DEVICE" --rounds "${ROUNDS:-3}" \
  --checkout synthloc="$repo" --checkout delay2="$repo" --checkout procs4="$repo" \
  --checkout-args synthloc='--warm-sizes 512' \
  --checkout-args delay2='--warm-sizes 512 --max-queue-delay-ms 2' \
  --checkout-args procs4='--warm-sizes 512 --processes 4' --client-processes 4 \
  --seconds 5 --json "$OUT/kserve_gpu.json" 2>&1 | tee "$OUT/kserve_gpu.log"
