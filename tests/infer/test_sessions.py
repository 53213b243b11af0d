"""A session per input shape (`pad_batches`): padded and split batches give the unpadded
answers, sessions are kept per shape within a bound, the repository sets it up (the service
with it: test_service's batching test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from infer_service.localizer import OnnxLocalizer, batch_buckets
from infer_service.repository import ModelRepository, warm_sides
from infer_service.sessions import ShapeSessions
from synthloc.errors import FailedPrecondition
from tests.infer.graphs import analytic_detector, detector_card


def _repository(tmp_path: Path, **options: object) -> ModelRepository:
    path = tmp_path / "models" / "nuclei" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(analytic_detector(detector_card()), str(path))
    return ModelRepository(tmp_path / "models", "cpu", **options)  # type: ignore[arg-type]


def test_batch_buckets_are_powers_of_two_up_to_the_maximum() -> None:
    assert batch_buckets(8) == (1, 2, 4, 8)
    assert batch_buckets(12) == (1, 2, 4, 8, 12)
    assert batch_buckets(1) == (1,)
    assert batch_buckets(0) == (1,)


def test_padded_and_split_batches_give_the_unpadded_outputs(detector_path: Path) -> None:
    plain, padded = OnnxLocalizer(detector_path), OnnxLocalizer(detector_path)
    padded.session_per_shape((1, 2, 4, 8))
    assert padded.batch_sizes == (1, 2, 4, 8) and plain.batch_sizes == ()
    rng = np.random.default_rng(0)
    for count in (1, 3, 5, 8, 11):
        batch = rng.random((count, 1, 32, 64), dtype=np.float32)
        want, got = plain.run(batch), padded.run(batch)
        for name, value in want.items():
            assert got[name].shape == value.shape
            np.testing.assert_array_equal(got[name], value)
    # 1 ran as 1; 3 as 4; 5 and 8 as 8; 11 as 8 and 3 padded to 4: three shapes in all.
    assert sorted(padded.session_shapes) == [(1, 1, 32, 64), (4, 1, 32, 64), (8, 1, 32, 64)]
    assert [padded.padded_batch_size(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 9]


def test_sessions_beyond_the_limit_go_least_recently_used_first(detector_path: Path) -> None:
    localizer = OnnxLocalizer(detector_path)
    localizer.session_per_shape((1,), max_sessions=2)
    for side in (32, 64, 32, 96):  # 32 is used again before 96 comes: 64 is the one to go
        localizer.run(np.zeros((1, 1, side, side), np.float32))
    assert localizer.session_shapes == [(1, 1, 32, 32), (1, 1, 96, 96)]


def test_the_first_shape_reuses_the_loaded_session_and_later_ones_need_no_file(
    detector_path: Path,
) -> None:
    localizer = OnnxLocalizer(detector_path)
    localizer.session_per_shape((1, 2))
    assert localizer._pool is not None
    assert localizer._pool.session((1, 1, 32, 32)) is localizer.session
    detector_path.write_bytes(b"a newer version, half written")  # the repository may do this
    out = localizer.run(np.ones((2, 1, 32, 64), np.float32))
    assert out["heatmap"].shape == (2, 1, 8, 16)
    assert localizer._pool.session((2, 1, 32, 64)) is not localizer.session


def test_shape_sessions_refuse_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="batch sizes must be positive"):
        ShapeSessions(lambda: None, (0, 4))  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="max_sessions must be at least 1"):
        ShapeSessions(lambda: None, (1,), max_sessions=0)  # type: ignore[arg-type,return-value]


def test_repository_pads_when_asked_and_warms_every_batch_size(tmp_path: Path) -> None:
    padded = _repository(tmp_path / "on", pad_batches="on", batch_sizes=(1, 2, 4))
    padded.scan()
    localizer = padded.get("nuclei").localizer
    assert localizer.batch_sizes == (1, 2, 4)
    assert sorted(localizer.session_shapes) == [(n, 1, 256, 256) for n in (1, 2, 4)]
    # auto pads only on the CUDA provider: on this CPU one session runs every shape.
    auto = _repository(tmp_path / "auto", batch_sizes=(1, 2, 4))
    auto.scan()
    assert auto.get("nuclei").localizer.batch_sizes == ()


def test_repository_names_a_bad_setting(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="pad_batches must be one of auto, on, off"):
        _repository(tmp_path / "a", pad_batches="sometimes")
    with pytest.raises(
        FailedPrecondition, match=r"max_sessions must be at least 1 \(flag --max-sessions\), got 0"
    ):
        _repository(tmp_path / "b", pad_batches="on", max_sessions=0)


def test_serve_names_a_bad_pad_batches_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from synthloc.cli import main

    _repository(tmp_path)  # writes tmp_path/models
    with pytest.raises(SystemExit) as exited:
        main(["infer", "serve", "--models", str(tmp_path / "models"), "--pad-batches", "often"])
    assert exited.value.code == 2
    assert "--pad-batches: invalid choice: 'often'" in capsys.readouterr().err
    monkeypatch.setenv("SYNTHLOC_INFER_PAD_BATCHES", "often")
    argv = ["infer", "serve", "--models", str(tmp_path / "models"), "--metrics-port", "-1"]
    assert main([*argv, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "pad_batches must be one of auto, on, off" in err and "got 'often'" in err


def test_each_warm_size_is_run_at_each_batch_size_at_load(tmp_path: Path) -> None:
    assert warm_sides("256, 500") == (256, 500)
    repository = _repository(tmp_path, pad_batches="on", batch_sizes=(1, 2), warm_sides=(256, 500))
    repository.scan()
    shapes = repository.get("nuclei").localizer.session_shapes
    # 500 px images are padded to the 512 bucket, so that is the shape warmed.
    assert sorted(shapes) == [(n, 1, side, side) for n in (1, 2) for side in (256, 512)]


@pytest.mark.parametrize("text", ["big", "256,-1", "", "0"])
def test_a_bad_warm_size_is_named(text: str) -> None:
    with pytest.raises(FailedPrecondition, match=f"warm_sizes must be image sides.*got {text!r}"):
        warm_sides(text)
