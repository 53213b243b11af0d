"""SynthesisClient against a real server: typed library, samples, determinism, shards, masks."""

from __future__ import annotations

import dataclasses
import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from synth_service.client import Recipe, Sample, SynthesisClient
from synth_service.server import SynthServer, create_server
from synth_service.settings import SynthSettings
from synthloc.errors import InvalidInput, Unauthenticated, Unavailable
from synthloc.v1 import synthesis_pb2
from tests.certs import make_pki, server_tls
from tests.synth_server import start_synth


@pytest.fixture(scope="module")
def server(disc_coco: Path) -> Iterator[SynthServer]:
    settings = SynthSettings(library=disc_coco, port=0, metrics_port=-1, workers=1)
    srv, _ = create_server(settings)
    srv.start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture()
def client(server: SynthServer) -> Iterator[SynthesisClient]:
    with SynthesisClient(f"127.0.0.1:{server.port}") as c:
        yield c


@pytest.fixture()
def small(client: SynthesisClient) -> Recipe:
    """The server's default recipe on a 64 x 80 canvas."""
    return dataclasses.replace(client.describe_library().default_recipe, height=64, width=80)


def _fingerprint(sample: Sample) -> tuple:
    return sample.index, sample.image.tobytes(), sample.boxes.tobytes(), sample.class_ids.tobytes()


def test_describe_library_is_typed_and_its_recipe_round_trips(client, server: SynthServer) -> None:
    info = client.describe_library()
    assert info.class_names == ["round", "oval"]
    library = server.engine.state.library
    assert [c.object_count for c in info.classes] == [len(ix) for ix in library.by_class]
    assert (info.dtype, info.channels, info.source_images) == ("uint16", 1, 2)
    assert info.library_hash == server.engine.state.library_hash and info.backgrounds > 0
    assert info.default_recipe == server.engine.default_recipe
    assert info.default_recipe.content_hash() == info.default_recipe_hash
    assert 5 < info.classes[0].size_p50 < 40  # the discs are 18 to 26 px across


def test_samples_carry_indices_arrays_names_and_provenance(client, small: Recipe) -> None:
    samples = list(client.stream(small, seed=4, start_index=10, count=5, batch_size=2))
    assert [s.index for s in samples] == [10, 11, 12, 13, 14]
    for s in samples:
        assert s.image.shape == (64, 80, 1) and s.image.dtype == np.uint8  # the recipe's
        n = len(s.boxes)
        assert s.boxes.shape == (n, 4) and s.boxes.dtype == np.float32 and n > 0
        x, y, w, h = s.boxes.T
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= 80).all() and (y + h <= 64).all()
        assert s.class_names == tuple(["round", "oval"][i] for i in s.class_ids)
        assert s.image_labels.tolist() == [float(k in s.class_ids) for k in (0, 1)]
        assert len(s.provenance) == n and {p.blend for p in s.provenance} <= {"HARD", "FEATHER"}
        assert all(0.6 <= p.visible_fraction <= 1 for p in s.provenance)
        assert s.recipe_hash == small.content_hash() and s.instance_labels is None
        assert s.masks is None
        assert np.array_equal(s.boxes_xyxy()[:, 2:], s.boxes[:, :2] + s.boxes[:, 2:])


def test_same_seed_and_index_give_the_same_bytes_in_any_encoding(client, small: Recipe) -> None:
    first = [_fingerprint(s) for s in client.stream(small, seed=9, count=4)]
    again = [_fingerprint(s) for s in client.stream(small, seed=9, count=4, encoding="png")]
    resumed = [_fingerprint(s) for s in client.stream(small, seed=9, start_index=2, count=2)]
    assert first == again and resumed == first[2:]
    other = [_fingerprint(s) for s in client.stream(small, seed=10, count=4)]
    assert all(a[1] != b[1] for a, b in zip(first, other, strict=True))


def test_shards_partition_the_index_space(client, small: Recipe) -> None:
    whole = {s.index: _fingerprint(s) for s in client.stream(small, seed=1, count=9)}
    parts: dict[int, tuple] = {}
    for shard in range(3):
        for s in client.stream(small, seed=1, count=3, shard_index=shard, num_shards=3):
            assert s.index % 3 == shard and s.index not in parts
            parts[s.index] = _fingerprint(s)
    assert parts == whole


def test_masks_match_the_boxes(client, small: Recipe) -> None:
    for s in client.stream(small, seed=3, count=3, include_masks=True, encoding="png"):
        assert s.instance_labels is not None and s.instance_labels.shape == (64, 80)
        masks = s.masks
        assert masks is not None and masks.shape == (len(s.boxes), 64, 80)
        for mask, (x, y, w, h), p in zip(masks, s.boxes, s.provenance, strict=True):
            ys, xs = mask.nonzero()
            assert (xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y) == (x, y, w, h)
            assert mask.sum() == p.area


def test_proto_recipe_default_recipe_and_an_endless_stream(client, server: SynthServer) -> None:
    proto = synthesis_pb2.Recipe(height=48, width=40)  # unset fields: the server's defaults
    assert next(iter(client.stream(proto, count=1))).image.shape == (48, 40, 1)
    endless = client.stream(Recipe(height=32, width=32, dtype="uint16"), batch_size=2)
    samples = list(itertools.islice(endless, 5))
    assert [s.index for s in samples] == [0, 1, 2, 3, 4]
    assert samples[0].image.shape == (32, 32, 1) and samples[0].image.dtype == np.uint16
    endless.close()  # cancels the call: the server's stream ends
    deadline = time.monotonic() + 5
    while server.metrics.active_streams._value.get() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.metrics.active_streams._value.get() == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seed": -1}, "seed: must be an integer >= 0, got -1"),
        ({"count": 0}, "count: must be an integer >= 1, or None for an endless stream"),
        ({"batch_size": 0}, "batch_size: must be an integer >= 1, got 0"),
        ({"encoding": "jpeg"}, "encoding: must be 'raw' or 'png', got 'jpeg'"),
        ({"recipe": {"height": 64}}, "recipe: expected a Recipe, a synthloc.v1.Recipe"),
    ],
)
def test_bad_arguments_are_refused_before_any_call(client, arguments, message) -> None:
    with pytest.raises(InvalidInput) as err:
        client.stream(**arguments)
    assert message in str(err.value)


def test_server_refusals_and_an_unreachable_server(client, server: SynthServer) -> None:
    with pytest.raises(InvalidInput) as err:
        list(client.stream(count=1, shard_index=2, num_shards=2))
    assert str(err.value) == (
        f"synthesis service at 127.0.0.1:{server.port} answered INVALID_ARGUMENT: "
        "shard_index: 2 must be < num_shards (2)"
    )
    with pytest.raises(InvalidInput, match=r"recipe\.class_weights: unknown class 'cell'"):
        list(client.stream(Recipe(class_weights={"cell": 1.0}), count=1))
    assert client.health() == "SERVING"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SynthesisClient(f"127.0.0.1:{port}") as nowhere, pytest.raises(Unavailable) as err:
        nowhere.describe_library()
    assert f"synthesis service at 127.0.0.1:{port} is unreachable" in str(err.value)


def test_token_and_mutual_tls(disc_coco: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = start_synth(disc_coco, auth_token="s3cret", **server_tls(pki))
    target = f"127.0.0.1:{server.port}"
    mtls = {"tls_ca": pki / "ca.pem", "tls_cert": pki / "client.pem", "tls_key": pki / "client.key"}
    try:
        with SynthesisClient(target, token="s3cret", **mtls) as c:
            assert c.describe_library().class_names == ["round", "oval"]
            (sample,) = c.stream(Recipe(height=32, width=32), count=1)
            assert sample.image.shape == (32, 32, 1)
        with SynthesisClient(target, **mtls) as c:
            assert c.health() == "SERVING"  # probes need no token
            with pytest.raises(Unauthenticated, match="missing or wrong bearer token") as err:
                c.describe_library()
            assert err.value.exit_code == 2
            with pytest.raises(Unauthenticated):
                list(c.stream(count=1))
        intruder = {**mtls, "tls_cert": pki / "intruder.pem", "tls_key": pki / "intruder.key"}
        # A stranger's certificate, then plaintext to the TLS port: no handshake, no call.
        for security in (intruder, {}):
            c = SynthesisClient(target, token="s3cret", timeout=5, **security)
            with c, pytest.raises(Unavailable):
                c.describe_library()
    finally:
        server.stop(grace=1)
