# syntax=docker/dockerfile:1
# Synthesis image: numpy and OpenCV, no ONNX Runtime, no torch. It also runs `synthloc data
# fetch` (pip is kept in the venv for that). Build from the repository root:
#   docker build -f docker/synth.Dockerfile -t synthloc/synth:0.1.0 .
ARG PYTHON_VERSION=3.11.14
ARG DEBIAN_RELEASE=bookworm

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
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
RUN python docker/requirements.py --without onnxruntime onnxruntime-gpu onnx pydicom \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt
# Every room is copied because the `synthloc` CLI registers all subcommands (their heavy
# imports only happen when a command runs).
COPY synthloc synthloc
COPY synth_service synth_service
COPY infer_service infer_service
COPY training training
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import synth_service.server, synthloc.datasets.fetch" \
    && python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('torch', 'onnxruntime')))"

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
# One fixed numeric user, so Kubernetes can check runAsNonRoot against the image.
RUN groupadd --gid 10001 synthloc \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin synthloc
COPY --from=build /opt/venv /opt/venv
# HOME is /tmp: with a read-only root file system, /tmp (an emptyDir) is the one writable place.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SYNTHLOC_DATA=/data \
    SYNTHLOC_SYNTH_HOST=0.0.0.0
USER 10001:10001
EXPOSE 50051 9101
ENTRYPOINT ["synthloc"]
CMD ["synth", "serve"]
