"""Regenerate the checked-in Python stubs from protos/ (the only source of the wire contract).

Usage: python protos/generate.py [--out DIR]   (default DIR: the repository root)

Every *.proto below protos/ is compiled; a file at protos/synthloc/v1/x.proto becomes the
module synthloc.v1.x_pb2 (+ x_pb2_grpc, x_pb2.pyi). The test suite runs this into a temporary
directory and fails when the checked-in stubs differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    """All .proto files of the contract, relative to protos/, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Compile every proto into out_dir, raising if protoc reports an error."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the messages above")
    for package_dir in {(out_dir / p).parent for p in proto_files()}:
        (package_dir / "__init__.py").touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT.parent)
    generate(parser.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
