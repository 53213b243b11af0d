# syntax=docker/dockerfile:1
# Training image: torch, the training extra, and onnxruntime for the export parity check.
# PyPI's torch wheels for Linux x86_64 are CUDA builds that carry their CUDA, cuDNN and NCCL
# libraries, so a slim Python base is enough (the host needs only the NVIDIA driver). For a
# smaller CPU-only image:
#   docker build -f docker/train.Dockerfile -t synthloc/train-cpu:0.1.0 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
ARG PYTHON_VERSION=3.11.14
ARG DEBIAN_RELEASE=bookworm

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
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
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/
RUN python docker/requirements.py --extra train > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt
COPY synthloc synthloc
COPY synth_service synth_service
COPY infer_service infer_service
COPY training training
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import training.engine, training.export"

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
RUN groupadd --gid 10001 synthloc \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin synthloc
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    SYNTHLOC_DATA=/data
USER 10001:10001
ENTRYPOINT ["synthloc"]
CMD ["train", "--help"]
