"""Training from a synthesis service that requires mutual TLS and a bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synth_service.server import SynthServer
from synthloc.cli import main
from tests.certs import make_pki, server_tls
from tests.synth_server import start_synth


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_server(data_root: Path, pki: Path) -> Iterator[SynthServer]:
    server = start_synth(
        data_root / "mnfinder" / "val.json", auth_token="s3cret", **server_tls(pki)
    )
    yield server
    server.stop(grace=1)


def _train(server: SynthServer, out: Path, *security: str) -> int:
    return main(
        [
            "train", "detector", "--synth", f"127.0.0.1:{server.port}", "--steps", "2",
            "--batch-size", "2", "--crop", "64", "--workers", "1", "--retries", "0",
            *security, "--out", str(out),
        ]
    )  # fmt: skip


def test_training_streams_over_mutual_tls_with_credentials_from_the_environment(
    secure_server: SynthServer, pki: Path, tmp_path: Path, monkeypatch
) -> None:
    # As the Kubernetes component passes them: SYNTHLOC_TRAIN_<FLAG>, no flags.
    monkeypatch.setenv("SYNTHLOC_TRAIN_SYNTH_TOKEN", "s3cret")
    monkeypatch.setenv("SYNTHLOC_TRAIN_SYNTH_TLS_CA", str(pki / "ca.pem"))
    monkeypatch.setenv("SYNTHLOC_TRAIN_SYNTH_TLS_CERT", str(pki / "client.pem"))
    monkeypatch.setenv("SYNTHLOC_TRAIN_SYNTH_TLS_KEY", str(pki / "client.key"))
    # --workers 1: the stream's credentials travel into a DataLoader worker process.
    assert _train(secure_server, tmp_path / "run") == 0
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_size > 0


def test_training_without_the_token_names_the_flag(
    secure_server: SynthServer, pki: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("SYNTHLOC_TRAIN_SYNTH_TOKEN", raising=False)
    tls = ["--synth-tls-ca", str(pki / "ca.pem"), "--synth-tls-cert", str(pki / "client.pem")]
    assert (
        _train(secure_server, tmp_path / "run", *tls, "--synth-tls-key", str(pki / "client.key"))
        == 2
    )
    err = capsys.readouterr().err
    assert f"synthesis service at 127.0.0.1:{secure_server.port} refused the call" in err
    assert "missing or wrong bearer token" in err and "--synth-token" in err
