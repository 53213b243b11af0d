"""Print one image's requirements, taken from pyproject.toml so the images never drift from it.

    python docker/requirements.py [--without NAME ...] [--extra NAME ...] [--add SPEC ...]

The project's dependencies, minus the distributions named by --without (the synthesis image
drops ONNX Runtime, the CPU inference image swaps onnxruntime-gpu for onnxruntime), plus the
named extras and any extra requirement given with --add. Environment markers are kept, so pip
still decides per platform. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """A distribution name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """The canonical distribution name at the start of a requirement string."""
    match = _NAME.match(spec)
    if match is None:
        raise ValueError(f"not a requirement: {spec!r}")
    return canonical(match.group(1))


def image_requirements(
    pyproject: dict,
    without: Sequence[str] = (),
    extras: Sequence[str] = (),
    add: Sequence[str] = (),
) -> list[str]:
    """The requirement lines for one image (see the module docstring)."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise ValueError(f"no such extra in pyproject.toml: {', '.join(unknown)}")
    specs = list(project["dependencies"])
    for extra in extras:
        specs.extend(optional[extra])
    dropped = {canonical(n) for n in without}
    missing = dropped - {requirement_name(s) for s in specs}
    if missing:
        raise ValueError(f"--without names no dependency: {', '.join(sorted(missing))}")
    return [s for s in specs if requirement_name(s) not in dropped] + list(add)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the requirement lines, one per line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--without", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--add", nargs="*", default=[], metavar="SPEC")
    args = parser.parse_args(argv)
    data = tomllib.loads(args.pyproject.read_text())
    try:
        lines = image_requirements(data, args.without, args.extra, args.add)
    except ValueError as exc:
        print(f"requirements.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
