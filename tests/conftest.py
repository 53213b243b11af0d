"""Shared fixtures. Real datasets come from the setup step (`make data`), never from a test."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthloc.datasets.fetch import SOURCES, default_root, read_manifest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root holding the fetched real datasets (fails loudly if setup did not run)."""
    root = default_root()
    missing = [name for name in SOURCES if read_manifest(root / name) is None]
    if missing:
        pytest.fail(
            f"datasets {missing} are not in {root}; run `make data` (or `synthloc data fetch "
            "all`) before the tests, or point SYNTHLOC_DATA at a fetched root"
        )
    return root


@pytest.fixture()
def offline_pip_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Make every pip run in this test unable to reach any package index."""
    settings = {
        "PIP_CONFIG_FILE": str(tmp_path / "no-pip.conf"),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return settings
