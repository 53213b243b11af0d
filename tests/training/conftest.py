"""A real synthesis replica for the training tests (small library, one worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synth_service.server import SynthServer, create_server
from synth_service.settings import SynthSettings


@pytest.fixture(scope="package")
def synth_server(data_root: Path) -> Iterator[SynthServer]:
    settings = SynthSettings(
        library=data_root / "mnfinder" / "val.json", port=0, metrics_port=-1, workers=1
    )
    server, _ = create_server(settings)
    server.start()
    yield server
    server.stop(grace=1)
