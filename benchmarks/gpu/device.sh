#!/usr/bin/env bash
# One device call of the GPU measurements (issue #5); benchmarks/gpu/prepare.sh says which.
# A call that brings one more part only reports what has arrived. Once every part named in
# .gpu/payload.parts is there it unpacks the payload, installs onnxruntime-gpu and the wheels
# into /tmp/site and kserve into /tmp/kserve-site (kept for a rerun on the same machine),
# points the loader at the CUDA and cuDNN libraries of the device's nvidia-* packages, and
# measures, writing under $OUT (each step goes on if an earlier one failed):
#   kserve_gpu.json  the service (4 processes; 4 replicas and an engine process) vs KServe's
#                    ModelServer, all on CUDA (kserve_side_by_side.py)
#   service_gpu.json the service on CUDA: overhead, batched vs unbatched, as 1 and 4
#                    processes, with an engine process behind 2 or 4 replicas, and the echo
#                    server's rate (infer_compare.py)
#   ort_gpu.json     ONNX Runtime alone on CUDA, batch 1/8/32 (infer_gpu.py; ORT_ALONE=0 skips)
#   gil_profile.txt  one server process's GIL under load (gil_profile.py; .gpu/py-spy.xz)
#   logs.tgz         every step's log, nvidia-smi, and the benchmark servers' own logs
# DEVICE=cpu runs the same steps on the CPU provider: a rehearsal on any machine. On a
# machine without Python 3.12 it runs with the checkout's venv standing in for the payload
# (how it was rehearsed on 2026-11-27, 1 min 45 s with ROUNDS=1):
#   mkdir -p /tmp/site /tmp/payload /tmp/shim && touch /tmp/site/.ready  # nothing else in it
#   cp MODEL.onnx /tmp/payload/model.onnx     # e.g. from benchmarks/infer_latency.default_model
#   ln -s KSERVE_VENV/lib/python3.X/site-packages /tmp/kserve-site
#   printf '#!/bin/sh\nexec %s/.venv/bin/python "$@"\n' "$PWD" > /tmp/shim/python3
#   chmod +x /tmp/shim/python3
#   PATH=/tmp/shim:$PATH DEVICE=cpu ROUNDS=1 bash benchmarks/gpu/device.sh
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
logs=$OUT/logs
mkdir -p "$logs"
# Every log goes into one archive at the end (a call brings back at most 8 files), the
# benchmark servers' own logs included, replicas' drain lines with them.
trap 'tar -czf "$OUT/logs.tgz" -C "$logs" . && rm -rf "$logs"' EXIT
export SYNTHLOC_BENCH_LOGS=$logs/servers
nvidia-smi | tee "$logs/nvidia-smi.txt" || echo "no nvidia-smi here"
python3 -c 'import onnxruntime as o; print(o.__file__, o.__version__, o.get_available_providers())'
model=$payload/model.onnx
rounds=${ROUNDS:-2}
# STEPS picks what runs (a short call can run one): kserve, service, ort, gil, gil_engine.
steps=",${STEPS:-kserve,service,ort,gil},"
step() { [[ $steps == *",$1,"* ]]; }
# Each step has its own time limit, so one that hangs leaves the others their time.
# 1. Against KServe's ModelServer, all on CUDA: the service as 4 processes on the port
#    (--processes), and as 4 replicas feeding one engine process (--engine-process), every
#    server warmed for the 512-pixel shapes the load sends.
#    KServe needs protobuf < 7, synthloc >= 7: each runs with its own folder first.
printf '#!/bin/sh\nPYTHONPATH=%s:%s exec python3 -m synthloc "$@"\n' "$site" "$repo" > /tmp/synthloc
chmod +x /tmp/synthloc
step kserve && PYTHONPATH="$kserve_site:$site" timeout 150 python3 benchmarks/kserve_side_by_side.py \
  --synthloc /tmp/synthloc --model "$model" --device "$DEVICE" --rounds "$rounds" \
  --checkout procs4="$repo" --checkout engine4="$repo" \
  --checkout-args procs4='--warm-sizes 512 --processes 4' \
  --checkout-args engine4='--warm-sizes 512 --processes 4 --engine-process' \
  --client-processes 4 --seconds 5 --json "$OUT/kserve_gpu.json" 2>&1 | tee "$logs/kserve_gpu.log"
# 2. The service's overhead and batching (batched: max batch 8, or 16 where named; unbatched:
#    max 1): one process, 4 processes, and 2 or 4 replicas feeding one engine process; the
#    load from 4 client processes (loadgen.py), and the echo server's rate under it, what
#    the host's Python gRPC answers.
step service && timeout 240 python3 benchmarks/infer_compare.py --model "$model" --arm one=. --arm procs4=. \
  --arm engine2=. --arm engine4=. --arm engine4_b16=. --arm-args procs4='--processes 4' \
  --arm-args engine2='--processes 2 --engine-process' \
  --arm-args engine4='--processes 4 --engine-process' \
  --arm-args engine4_b16='--processes 4 --engine-process --max-batch-size 16' \
  --serve-args '--warm-sizes 512' --device "$DEVICE" --client-processes 4 \
  --rounds "$rounds" --repeats 30 --seconds 3 --json "$OUT/service_gpu.json" \
  2>&1 | tee "$logs/service_gpu.log"
# 3. ONNX Runtime alone at batch 1/8/32 (ORT_ALONE=0 skips it on a device measured before).
if step ort && [ "${ORT_ALONE:-1}" = 1 ]; then
  timeout 70 python3 benchmarks/infer_gpu.py --model "$model" --providers "$DEVICE" \
    --repeats 30 --json "$OUT/ort_gpu.json" 2>&1 | tee "$logs/ort_gpu.log"
fi
# 4. Where one server process spends its GIL at c16 (py-spy, carried as .gpu/py-spy.xz): what
#    bounds one process on this host, and so what --processes works around.
#    gil_engine: the same of every process of 4 replicas and an engine process.
if [ -f .gpu/py-spy.xz ] && xz -dc .gpu/py-spy.xz > /tmp/py-spy && chmod +x /tmp/py-spy; then
  step gil && timeout 45 python3 benchmarks/gil_profile.py --model "$model" --py-spy /tmp/py-spy \
    --device "$DEVICE" --client-processes 4 --seconds 8 --out "$OUT/gil_profile.txt" \
    2>&1 | tee "$logs/gil_profile.log"
  step gil_engine && timeout 90 python3 benchmarks/gil_profile.py --model "$model" \
    --py-spy /tmp/py-spy --device "$DEVICE" --client-processes 4 --seconds 8 --all-processes \
    --serve-args '--warm-sizes 512 --processes 4 --engine-process' \
    --out "$OUT/gil_engine.txt" 2>&1 | tee "$logs/gil_engine.log"
fi
