# syntax=docker/dockerfile:1
# Inference image for CPU nodes: ONNX Runtime's CPU build, no torch, no CUDA libraries.
# Build from the repository root:
#   docker build -f docker/infer.Dockerfile -t synthloc/infer:0.1.0 .
ARG PYTHON_VERSION=3.11.14
ARG DEBIAN_RELEASE=bookworm

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG ONNXRUNTIME_VERSION=1.31.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# gcc builds the compose kernel (synth_service/kernel/*.c) at `pip install .`; only this
# stage has it. Debian's versions move with the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/
# pyproject.toml asks for onnxruntime-gpu on Linux x86_64; this image swaps in the CPU build.
RUN python docker/requirements.py --without onnxruntime onnxruntime-gpu \
        --add "onnxruntime==${ONNXRUNTIME_VERSION}" > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt
COPY synthloc synthloc
COPY synth_service synth_service
COPY infer_service infer_service
COPY training training
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import infer_service.server" \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
RUN groupadd --gid 10001 synthloc \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin synthloc
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SYNTHLOC_INFER_HOST=0.0.0.0 \
    SYNTHLOC_INFER_MODELS=/models \
    SYNTHLOC_INFER_DEVICE=cpu
USER 10001:10001
EXPOSE 8001 8002
ENTRYPOINT ["synthloc"]
CMD ["infer", "serve"]
