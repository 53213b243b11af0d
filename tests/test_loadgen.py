"""benchmarks/loadgen.py, the load generator behind the inference figures, against a real server."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from loadgen import Call, LoadGenerator

METHOD = "/test.Counter/Count"


class _Counting(grpc.GenericRpcHandler):
    """Answers METHOD with the request's bytes, counting calls and the peers they came from."""

    def __init__(self) -> None:
        self.calls = 0
        self.peers: set[str] = set()
        self._lock = threading.Lock()

    def service(self, details: grpc.HandlerCallDetails):
        if details.method != METHOD:
            return None

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls += 1
                self.peers.add(context.peer())
            return request

        return grpc.unary_unary_rpc_method_handler(answer)


@pytest.fixture(scope="module")
def counted():
    handler = _Counting()
    server = grpc.server(ThreadPoolExecutor(16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with LoadGenerator(processes=2) as load:
        yield handler, f"127.0.0.1:{port}", load
    server.stop(grace=1)


def test_every_client_has_its_own_connection_and_the_window_is_counted(counted) -> None:
    handler, address, load = counted
    before = handler.calls
    rate, p99_ms = load.run(Call(address, METHOD, b"x" * 1000), concurrency=6, seconds=0.5)
    made = handler.calls - before
    counted_calls = rate * 0.5
    # One untimed call per client first; calls still running at the stop are not counted.
    assert 6 + counted_calls <= made <= 6 + counted_calls + 6
    assert counted_calls > 20 and 0 < p99_ms < 500
    assert len(handler.peers) >= 6  # six connections (ports) at least, over two processes


def test_a_failing_call_stops_the_run_with_the_servers_answer(counted) -> None:
    _, address, load = counted
    with pytest.raises(RuntimeError, match=r"(?s)a load generator process failed: .*UNIMPLEMENTED"):
        load.run(Call(address, "/test.Counter/Missing", b""), concurrency=2, seconds=0.2)
    rate, _ = load.run(Call(address, METHOD, b""), concurrency=2, seconds=0.2)  # still works
    assert rate > 0
