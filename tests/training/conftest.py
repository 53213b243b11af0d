"""A real synthesis replica for the training tests (small library, one worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synth_service.server import SynthServer
from tests.synth_server import start_synth


@pytest.fixture(scope="package")
def synth_server(data_root: Path) -> Iterator[SynthServer]:
    server = start_synth(data_root / "mnfinder" / "val.json")
    yield server
    server.stop(grace=1)
