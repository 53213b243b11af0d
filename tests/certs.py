"""A throwaway PKI for the TLS tests, made with the openssl command line (EC keys: fast)."""

from __future__ import annotations

import subprocess
from pathlib import Path

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)


def _authority(folder: Path, name: str) -> None:
    _openssl(
        folder, "req", "-x509", *_KEY, "-days", "1", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
    )  # fmt: skip


def _leaf(folder: Path, name: str, issuer: str, san: str) -> None:
    _openssl(
        folder,
        "req",
        *_KEY,
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
    )
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem",
        "-CAkey", f"{issuer}.key", "-CAcreateserial", "-days", "1",
        "-extfile", f"{name}.ext", "-out", f"{name}.pem",
    )  # fmt: skip


def make_pki(folder: Path) -> Path:
    """Write into `folder` (and return it), each as NAME.pem + NAME.key:

    ca: the site's authority; server: for 127.0.0.1, signed by ca; client: a client signed by
    ca; intruder: a client signed by an unrelated authority (stranger-ca).
    """
    folder.mkdir(parents=True, exist_ok=True)
    _authority(folder, "ca")
    _authority(folder, "stranger-ca")
    _leaf(folder, "server", "ca", "IP:127.0.0.1")
    _leaf(folder, "client", "ca", "DNS:client")
    _leaf(folder, "intruder", "stranger-ca", "DNS:intruder")
    return folder


def server_tls(pki: Path) -> dict[str, Path]:
    """Server settings for mutual TLS with the PKI in `pki` (both services name them alike)."""
    return {
        "tls_cert": pki / "server.pem",
        "tls_key": pki / "server.key",
        "tls_client_ca": pki / "ca.pem",
    }
