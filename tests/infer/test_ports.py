"""The gRPC port: a taken port fails the start; --reuse-port lets server processes share one."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import grpc
import pytest

from infer_service.server import InferServer
from synthloc.errors import Unavailable
from synthloc.v1 import localization_pb2_grpc
from tests.infer.test_cli import SYNTHLOC
from tests.infer.test_service import _request, _start, _write_model


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    _write_model(tmp_path / "models", "nuclei", "1")
    return tmp_path / "models"


def _served_ok(server: InferServer) -> float:
    sample = server.metrics.registry.get_sample_value(
        "synthloc_infer_requests_total", {"model": "nuclei", "version": "1", "code": "OK"}
    )
    return sample or 0.0


def test_a_taken_port_fails_the_start_and_its_holder_keeps_serving(repo: Path) -> None:
    holder = _start(repo)
    try:
        # Without --reuse-port on either side, and with it on the newcomer only: gRPC's own
        # default (SO_REUSEPORT on) would have let both bind and share the connections.
        for reuse in (False, True):
            with pytest.raises(Unavailable) as refused:
                _start(repo, port=holder.port, reuse_port=reuse)
            assert str(refused.value) == (
                f"cannot listen on 127.0.0.1:{holder.port}: another process holds that port, or "
                "this host has no such address (choose another port, or port 0 for a free one)"
            )
        with grpc.insecure_channel(f"127.0.0.1:{holder.port}") as channel:
            answer = localization_pb2_grpc.LocalizationServiceStub(channel).Localize(_request())
        assert len(answer.detections) == 1
        assert _served_ok(holder) == 1
    finally:
        holder.stop(grace=1)


def test_reuse_port_lets_two_servers_share_one_port(repo: Path) -> None:
    first = _start(repo, reuse_port=True)
    second = _start(repo, reuse_port=True, port=first.port)
    try:
        assert second.port == first.port
        calls = 32
        for _ in range(calls):  # each on a connection of its own, which the kernel places
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(f"127.0.0.1:{first.port}", options=options) as channel:
                stub = localization_pb2_grpc.LocalizationServiceStub(channel)
                assert len(stub.Localize(_request()).detections) == 1
        counts = [_served_ok(first), _served_ok(second)]
        # Both took a share (all 32 connections on one of two: odds 2**-31).
        assert sum(counts) == calls and min(counts) > 0, counts
    finally:
        first.stop(grace=1)
        second.stop(grace=1)


def test_serve_on_a_taken_port_exits_3_and_names_the_port(repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [SYNTHLOC, "infer", "serve", "--models", str(repo), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 3, done.stderr
    assert f"synthloc: error: cannot listen on 127.0.0.1:{port}: another process holds" in (
        done.stderr
    )
