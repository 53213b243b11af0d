"""Compile synthloc's C extensions in place for the Python that runs this script.

    python3 benchmarks/gpu/build_native.py [MODULE ...]   # e.g. synthloc._native

The device machine gets the checkout without its build outputs, and its Python (3.12) is not
the one here, so the extensions that `pip install` would build are compiled there, in place.
Sources and flags come from pyproject.toml's [[tool.setuptools.ext-modules]] table, built with
setuptools' own build_ext (which needs no setuptools new enough to read that table itself).
Without arguments it builds every module in the table. Prints each built file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tomllib
from setuptools import Distribution, Extension
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parents[2]


def extensions(names: list[str]) -> list[Extension]:
    """The named modules of pyproject.toml's ext-modules table (all of them without names)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    table = {m["name"]: m for m in pyproject["tool"]["setuptools"]["ext-modules"]}
    if unknown := sorted(set(names) - set(table)):
        raise SystemExit(f"not in pyproject.toml's ext-modules: {unknown}; it has {sorted(table)}")
    return [
        Extension(
            name,
            table[name]["sources"],
            depends=table[name].get("depends", []),
            extra_compile_args=table[name].get("extra-compile-args", []),
        )
        for name in names or table
    ]


def main(argv: list[str]) -> int:
    os.chdir(ROOT)  # the table's paths are relative to the checkout
    command = build_ext(Distribution({"name": "synthloc", "ext_modules": extensions(argv)}))
    command.inplace = True
    command.ensure_finalized()
    command.run()
    for ext in command.extensions:
        print(command.get_ext_fullpath(ext.name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
