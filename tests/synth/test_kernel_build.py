"""The compose kernel gives the same bytes whichever SIMD path the machine takes.

Hot loops are built twice (AVX2 and the x86-64 baseline, picked at load: kernel.h). This
builds the kernel again with the baseline only, loads it beside the installed one and
composes the same samples with both.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from synth_service import backgrounds, draws, intensity, kernel
from synth_service.compose import compose
from synth_service.recipe import BlendMode, NoiseModel, Recipe

from .conftest import FlatBackground

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None
    or platform.machine() != "x86_64"
    or sys.platform != "linux"
    or sys.version_info < (3, 11),  # tomllib
    reason="the AVX2 clones are built with GCC on x86-64 Linux only",
)


def _baseline_kernel(folder: Path):
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    modules = config["tool"]["setuptools"]["ext-modules"]
    (ext,) = [m for m in modules if m["name"] == "synth_service._kernel"]
    target = folder / ("_kernel" + sysconfig.get_config_var("EXT_SUFFIX"))
    command = [
        "gcc", "-shared", "-fPIC", *ext["extra-compile-args"], "-DSYNTHLOC_NO_CLONES",
        "-I", sysconfig.get_paths()["include"], *(str(REPO / s) for s in ext["sources"]),
        "-o", str(target), "-lm",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert b"avx2" not in target.read_bytes()
    spec = importlib.util.spec_from_file_location("_kernel", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _samples(library) -> list[bytes]:
    out = []
    for recipe in [
        Recipe(height=96, width=128),
        Recipe(height=96, width=128, noise=NoiseModel.POISSON, blur_probability=0.7),
        Recipe(height=64, width=64, blending=((BlendMode.HARD, 1.0),), dtype="uint16"),
    ]:
        for index in range(6):
            sample = compose(recipe, library, FlatBackground(), 5, index, with_masks=True)
            out.append(sample.image.tobytes() + sample.instance_labels.tobytes())
            out.append(repr(sample.objects).encode())
    return out


def test_baseline_and_avx2_builds_give_the_same_bytes(tmp_path, monkeypatch, disc_library) -> None:
    installed = _samples(disc_library)
    baseline = _baseline_kernel(tmp_path)
    for module in (backgrounds, draws, intensity, kernel):
        monkeypatch.setattr(module, "_kernel", baseline)
    assert kernel._kernel is baseline
    assert _samples(disc_library) == installed
    assert len(set(installed)) > 20 and np.mean([len(b) for b in installed]) > 1000
