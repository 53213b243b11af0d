"""A real synthesis replica for tests: port 0, no metrics port, one worker, started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synth_service.server import SynthServer, create_server
from synth_service.settings import SynthSettings


def start_synth(library: Path, **overrides: Any) -> SynthServer:
    """Build and start a replica on `library`; the caller stops it."""
    settings = {"port": 0, "metrics_port": -1, "workers": 1, **overrides}
    server, _ = create_server(SynthSettings(library=library, **settings))
    server.start()
    return server
