# syntax=docker/dockerfile:1
# Inference image for NVIDIA GPUs: onnxruntime-gpu on NVIDIA's CUDA + cuDNN runtime base.
# onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9 (its wheel links libcudart.so.13
# and libcublas.so.13), hence the CUDA 13 base; change both together. The host needs only the
# NVIDIA driver and container toolkit (or the GPU operator). Build from the repository root:
#   docker build -f docker/infer-gpu.Dockerfile -t synthloc/infer-gpu:0.1.0 .
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_RELEASE=24.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu${UBUNTU_RELEASE} AS build
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# Ubuntu's own Python (3.12 on 24.04); its package versions move with the pinned base image.
# gcc and the Python headers build the compose kernel (synth_service/kernel/*.c) at
# `pip install .`; only this stage has them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc \
        libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/
RUN python docker/requirements.py --without onnxruntime onnxruntime-gpu \
        --add "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt
COPY synthloc synthloc
COPY synth_service synth_service
COPY infer_service infer_service
COPY training training
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import infer_service.server" \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu${UBUNTU_RELEASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# The venv links to the system interpreter, so the runtime stage needs the same python3.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 synthloc \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin synthloc
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SYNTHLOC_INFER_HOST=0.0.0.0 \
    SYNTHLOC_INFER_MODELS=/models \
    SYNTHLOC_INFER_DEVICE=cuda
USER 10001:10001
EXPOSE 8001 8002
ENTRYPOINT ["synthloc"]
CMD ["infer", "serve"]
