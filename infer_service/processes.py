"""`infer serve --processes N`: N server processes on one port, one metrics endpoint.

One Python process is the limit before a GPU is: on an H100 host one process answered about
900 requests/s, four 2,000 (README, inference figures). With `processes` > 1 the command
becomes a supervisor: it spawns N replicas, each a whole InferServer (models, sessions,
batcher) listening on the same port with SO_REUSEPORT, so the kernel spreads connections
over them (Linux; one connection stays with one replica). Replica 0 starts first, so a port
of 0 becomes the port it bound, then the others join it.

The supervisor serves /metrics on `metrics_port`: the replicas' own endpoints (on 127.0.0.1,
free ports) scraped and added up sample by sample, so the exposition has the names and
labels of one process and dashboards need no change; the loaded-model gauge takes the
maximum instead (a version is loaded once per pod, not N times).

Stopping: on SIGTERM (to the supervisor, or to a replica directly, as systemd does to every
process) all replicas drain together as a single server would; any still there after the
grace + DRAIN_MARGIN_SECONDS is killed and the exit is 1, else 0. A replica that dies (not
drained) takes the others down and the supervisor exits 1, for the orchestrator to restart
the pod; one that fails to start ends it with that replica's exit code and message. A
replica whose supervisor is gone (SIGKILL, OOM) drains and exits: none is left serving.

With `engine_process`, the replicas run no models themselves: an engine process, started
first and stopped last, runs them and batches for all (infer_service.engine_process).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import signal
import threading
import time
import urllib.request
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from infer_service.engine_process import EngineLink, EngineProcess
from infer_service.settings import InferSettings
from synthloc.errors import InvalidInput, SynthlocError
from synthloc.serving import wait_for

log = logging.getLogger(__name__)

MAX_FAMILIES = {"synthloc_infer_model_loaded"}  # the same value in every replica: not summed
SCRAPE_SECONDS = 5.0
DRAIN_MARGIN_SECONDS = 5.0  # beyond the grace, for a replica's exit (its sessions, its CUDA)
KILL_WAIT_SECONDS = 5.0


class ReplicaFailed(SynthlocError):
    """A replica could not start; carries its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class MergedMetrics:
    """The replicas' metrics, scraped on every collect and added up sample by sample."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def collect(self) -> Iterable[Metric]:
        texts = []
        for url in self.urls:  # a replica that does not answer fails the scrape (up = 0)
            with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as answer:
                texts.append(answer.read().decode())
        return merge_expositions(texts)


def merge_expositions(texts: list[str]) -> list[Metric]:
    """Families of several Prometheus text expositions, samples with equal labels combined:
    summed, except `_created` (the earliest) and the families of MAX_FAMILIES (the largest)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in merged:
                merged[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            table = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in table:
                    table[key] = sample.value
                elif sample.name.endswith("_created"):
                    table[key] = min(table[key], sample.value)
                elif family.name in MAX_FAMILIES:
                    table[key] = max(table[key], sample.value)
                else:
                    table[key] += sample.value
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(merged.values())


def serve_processes(settings: InferSettings) -> int:
    """Run `settings.processes` replicas until SIGTERM or SIGINT; 0 after a clean drain."""
    if settings.processes < 1:
        raise InvalidInput(
            f"processes must be at least 1 (flag --processes), got {settings.processes}"
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    level = logging.getLogger().getEffectiveLevel()
    # Replicas' metrics on free ports of 127.0.0.1, for the supervisor to add up (none if off).
    metrics = 0 if settings.metrics_port >= 0 else -1
    first = dataclasses.replace(settings, processes=1, reuse_port=True, metrics_port=metrics)
    replicas: list[Replica] = []
    engine: EngineProcess | None = None
    httpd = None
    try:
        link = None
        if settings.engine_process:
            engine = EngineProcess.spawn(first, level)
            link = engine.ready()
        replicas.append(Replica.spawn(first, 0, level, link))
        port, metrics_port = replicas[0].ready()
        others = dataclasses.replace(first, port=port)  # port 0 became the one replica 0 bound
        replicas += [Replica.spawn(others, i, level, link) for i in range(1, settings.processes)]
        metrics_ports = [metrics_port] + [replica.ready()[1] for replica in replicas[1:]]
        if engine is not None:  # its batch sizes and queue depth
            metrics_ports.append(engine.metrics_port)
        if settings.metrics_port >= 0:
            registry = CollectorRegistry()
            registry.register(
                MergedMetrics([f"http://127.0.0.1:{m}/metrics" for m in metrics_ports])
            )
            httpd, _ = start_http_server(settings.metrics_port, settings.host, registry)
        log.info(
            "inference service on %s:%d (metrics on port %s): %d processes",
            settings.host,
            port,
            httpd.server_port if httpd else None,
            settings.processes,
        )
        sentinels: dict[Any, Replica | EngineProcess] = {r.proc.sentinel: r for r in replicas}
        if engine is not None:
            sentinels[engine.proc.sentinel] = engine
        while not stop.is_set():
            for ended in wait(list(sentinels), timeout=0.5):
                replica = sentinels[ended]
                if isinstance(replica, EngineProcess):
                    replica.proc.join()
                    log.error(
                        "the engine process (pid %d) exited unexpectedly (exit code %s); "
                        "stopping the replicas",
                        replica.proc.pid,
                        replica.proc.exitcode,
                    )
                    return 1
                replica.proc.join()
                if replica.proc.exitcode == 0:  # drained: SIGTERM reached it directly
                    log.info("%s drained and exited; draining the others", replica)
                    stop.set()
                    break
                log.error(
                    "%s exited unexpectedly (%s); stopping the others", replica, replica.how()
                )
                return 1
        log.info("draining %d replicas (grace %.1f s)", len(replicas), settings.grace_seconds)
        clean = _stop_all(replicas, settings.grace_seconds)
        if engine is not None:  # after the replicas: their in-flight requests run there
            clean = engine.stop(settings.grace_seconds + DRAIN_MARGIN_SECONDS) and clean
        log.info("stopped" if clean else "stopped, not cleanly (see above)")
        return 0 if clean else 1
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        _stop_all(replicas, settings.grace_seconds)
        if engine is not None:  # a second stop only removes what is left (its socket folder)
            engine.stop(settings.grace_seconds + DRAIN_MARGIN_SECONDS)


@dataclasses.dataclass
class Replica:
    """One spawned server process and the pipe it reports on."""

    index: int
    proc: Any
    pipe: Connection

    @classmethod
    def spawn(
        cls, settings: InferSettings, index: int, log_level: int, engine: EngineLink | None = None
    ) -> Replica:
        spawn = mp.get_context("spawn")  # CUDA and gRPC do not survive a fork
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(
            target=_replica,
            args=(settings, index, log_level, theirs, engine),
            name=f"replica-{index}",
        )
        proc.start()
        theirs.close()
        replica = cls(index, proc, ours)
        log.info("%s started", replica)
        return replica

    def ready(self) -> tuple[int, int]:
        """(port, metrics port) once it serves; its failure to start raised instead."""
        try:
            kind, *value = self.pipe.recv()
        except EOFError:  # it died before it could say why (its traceback is in the log)
            self.proc.join()
            raise ReplicaFailed(f"{self} exited while starting ({self.how()})", 1) from None
        if kind == "error":
            message, exit_code = value
            raise ReplicaFailed(message, exit_code)
        return value[0], value[1]

    def how(self) -> str:
        code = self.proc.exitcode
        return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def __str__(self) -> str:
        return f"replica {self.index} (pid {self.proc.pid})"


def _stop_all(replicas: list[Replica], grace: float) -> bool:
    """SIGTERM every live replica, wait out their drain (grace + DRAIN_MARGIN_SECONDS for all
    of them together), SIGKILL what is left; True if every one drained and exited 0."""
    running = [r for r in replicas if r.proc.is_alive()]
    for replica in running:
        replica.proc.terminate()
    deadline = time.monotonic() + grace + DRAIN_MARGIN_SECONDS
    for replica in running:
        replica.proc.join(max(0.0, deadline - time.monotonic()))
    late = [r for r in running if r.proc.is_alive()]
    for replica in late:
        log.error(
            "%s did not drain within %.1f s of SIGTERM; killing it",
            replica,
            grace + DRAIN_MARGIN_SECONDS,
        )
        replica.proc.kill()
    for replica in late:
        replica.proc.join(KILL_WAIT_SECONDS)
        if replica.proc.is_alive():  # stuck in the kernel, e.g. in a GPU driver call
            log.error(
                "%s is still there %.0f s after SIGKILL; leaving it", replica, KILL_WAIT_SECONDS
            )
    for replica in running:
        if replica.proc.exitcode not in (0, None):  # None: the one left above, logged there
            log.error("%s ended with %s", replica, replica.how())
    return all(r.proc.exitcode == 0 for r in running)


def _replica(
    settings: InferSettings,
    index: int,
    log_level: int,
    pipe: Connection,
    engine: EngineLink | None = None,
) -> None:
    """One replica's life: build and start the server, report, serve until SIGTERM, drain."""
    from infer_service.server import create_server

    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s replica {index} %(name)s: %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C reaches the supervisor too
    try:
        server, port = create_server(settings, engine)
        server.start(metrics_host="127.0.0.1", announce=False)
    except SynthlocError as error:
        pipe.send(("error", f"replica {index}: {error}", error.exit_code))
        raise SystemExit(error.exit_code) from None
    threading.Thread(target=_drain_without_supervisor, args=(stop,), daemon=True).start()
    pipe.send(("ready", port, server.metrics_port))
    wait_for(stop)
    began = time.monotonic()
    log.info("draining (grace %.1f s)", settings.grace_seconds)
    server.stop()
    log.info("drained in %.1f s", time.monotonic() - began)
    # The supervisor's own SIGTERM may come after a direct one (a control-group kill): from
    # here on it must not end the interpreter's exit with a signal, which would read as unclean.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _drain_without_supervisor(stop: threading.Event) -> None:
    """Drain when the supervisor is gone (SIGKILL, OOM): no replica outlives it, serving on
    a port nothing watches."""
    supervisor = mp.parent_process()
    if supervisor is not None:
        supervisor.join()
        if not stop.is_set():
            log.warning("the supervisor (pid %s) is gone; draining", supervisor.pid)
            stop.set()
