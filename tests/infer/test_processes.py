"""`synthloc infer serve --processes N`: replicas on one port, merged metrics, their lifecycle."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infer_service.processes import merge_expositions
from synthloc.v1 import localization_pb2_grpc
from tests.infer.test_cli import SYNTHLOC
from tests.infer.test_service import _request, _write_model


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    _write_model(tmp_path / "models", "nuclei", "1")
    return tmp_path / "models"


def _serve(repo: Path, *flags: str) -> tuple[subprocess.Popen, int, int, list[str]]:
    """The supervisor, its gRPC and metrics ports, and the log lines read so far."""
    command = [SYNTHLOC, "infer", "serve", "--models", str(repo), "--port", "0"]
    command += ["--metrics-port", "0", "--grace-seconds", "2", *flags]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (line := proc.stderr.readline()):
        lines.append(line)
        found = re.search(
            r"inference service on 127\.0\.0\.1:(\d+) \(metrics on port (\d+)\)", line
        )
        if found:
            return proc, int(found.group(1)), int(found.group(2)), lines
    proc.kill()
    code = proc.wait()
    raise AssertionError(
        f"the supervisor (exit {code}) never said it was serving:\n{''.join(lines)}"
    )


def _localize_on_new_connections(port: int, calls: int) -> None:
    for _ in range(calls):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            assert len(stub.Localize(_request()).detections) == 1


def test_replicas_share_the_port_and_one_endpoint_adds_up_their_metrics(repo: Path) -> None:
    proc, port, metrics_port, lines = _serve(repo, "--processes", "2")
    try:
        assert sum("replica" in line and "started" in line for line in lines) == 2
        assert sum("serving on port" in line for line in lines) == 2
        _localize_on_new_connections(port, 24)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        ok = (("code", "OK"), ("model", "nuclei"), ("version", "1"))
        assert samples["synthloc_infer_requests_total", ok] == 24
        assert samples["synthloc_infer_request_seconds_count", (("model", "nuclei"),)] == 24
        loaded = (("model", "nuclei"), ("provider", "CPUExecutionProvider"), ("version", "1"))
        assert samples["synthloc_infer_model_loaded", loaded] == 1  # not 2: the same version
        promtool = Path(sys.executable).parent / "promtool"
        done = subprocess.run(
            [str(promtool), "check", "metrics"], input=text.encode(), capture_output=True
        )
        assert done.returncode == 0 and done.stdout + done.stderr == b"", done.stdout + done.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(grpc.RpcError) as gone:  # no replica is left on the port
        _localize_on_new_connections(port, 1)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_replica_that_dies_takes_the_supervisor_down_with_exit_1(repo: Path) -> None:
    proc, port, _, lines = _serve(repo, "--processes", "2")
    try:
        pid = int(re.search(r"replica 1 \(pid (\d+)\) started", "".join(lines)).group(1))
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
        assert f"replica 1 (pid {pid}) exited unexpectedly (signal 9)" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(grpc.RpcError):  # replica 0 was stopped with it
        _localize_on_new_connections(port, 1)


def _pids(lines: list[str]) -> list[int]:
    return [int(pid) for pid in re.findall(r"replica \d \(pid (\d+)\) started", "".join(lines))]


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_replicas_drain_when_their_supervisor_is_killed(repo: Path) -> None:
    proc, port, _, lines = _serve(repo, "--processes", "2")
    pids = _pids(lines)
    proc.kill()  # SIGKILL: the supervisor cannot stop them itself
    proc.wait()
    assert all(_gone(pid, 30) for pid in pids), "a replica outlived its supervisor"
    with pytest.raises(grpc.RpcError):
        _localize_on_new_connections(port, 1)


def test_a_replica_that_ignores_sigterm_is_killed_after_the_grace(repo: Path) -> None:
    proc, _, _, lines = _serve(repo, "--processes", "2")  # --grace-seconds 2
    try:
        stuck = _pids(lines)[1]
        os.kill(stuck, signal.SIGSTOP)  # runs no handler, as if hung
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 1
        took = time.monotonic() - began
        assert 2 + 5 - 1 < took < 2 + 5 + 10, took  # the grace and the margin, then SIGKILL
        said = proc.stderr.read()
        assert f"replica 1 (pid {stuck}) did not drain within 7.0 s of SIGTERM; killing it" in said
        assert "stopped, not cleanly" in said
        assert _gone(stuck, 10)
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_sent_to_one_replica_drains_them_all_cleanly(repo: Path) -> None:
    proc, _, _, lines = _serve(repo, "--processes", "2")
    try:
        first, second = _pids(lines)
        os.kill(second, signal.SIGTERM)  # as systemd's control-group kill does, to every pid
        assert proc.wait(timeout=60) == 0
        assert f"replica 1 (pid {second}) drained and exited; draining the others" in (
            proc.stderr.read()
        )
        assert _gone(first, 10)
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_to_the_whole_group_stops_cleanly(repo: Path) -> None:
    """As `timeout`, a terminal or systemd do: every process gets SIGTERM, the supervisor's own
    SIGTERM then reaches replicas that are already on their way out."""
    proc, _, _, _ = _serve(repo, "--processes", "2")
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        said = proc.stderr.read()
        assert "ended with" not in said and said.rstrip().endswith("stopped"), said
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--processes", "2"], "synthloc: error: replica 0: {models}: no loadable model"),
        (["--processes", "0"], "synthloc: error: processes must be at least 1 (flag --processes)"),
    ],
)
def test_a_start_that_fails_exits_2_with_the_reason(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    command = [SYNTHLOC, "infer", "serve", "--models", str(empty), "--port", "0", *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message.format(models=empty) in done.stderr


def test_merging_sums_samples_but_keeps_the_earliest_created_and_the_largest_loaded() -> None:
    one = """# HELP r_total Requests.
# TYPE r_total counter
r_total{code="OK"} 3.0
r_created{code="OK"} 100.0
# HELP h Seconds.
# TYPE h histogram
h_bucket{le="0.1"} 1.0
h_bucket{le="+Inf"} 2.0
h_count 2.0
h_sum 0.5
# HELP synthloc_infer_model_loaded Loaded.
# TYPE synthloc_infer_model_loaded gauge
synthloc_infer_model_loaded{model="m"} 1.0
"""
    two = one.replace(" 3.0", " 4.0").replace("100.0", "90.0").replace("h_sum 0.5", "h_sum 1.5")
    two += '# HELP q Queue.\n# TYPE q gauge\nq 5.0\nr_total{code="INTERNAL"} 1.0\n'
    merged = {
        (s.name, tuple(s.labels.items())): s.value
        for family in merge_expositions([one, two])
        for s in family.samples
    }
    assert merged == {
        ("r_total", (("code", "OK"),)): 7.0,
        ("r_created", (("code", "OK"),)): 90.0,
        ("h_bucket", (("le", "0.1"),)): 2.0,
        ("h_bucket", (("le", "+Inf"),)): 4.0,
        ("h_count", ()): 4.0,
        ("h_sum", ()): 2.0,
        ("synthloc_infer_model_loaded", (("model", "m"),)): 1.0,
        ("q", ()): 5.0,
        ("r_total", (("code", "INTERNAL"),)): 1.0,
    }
