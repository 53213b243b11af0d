"""The checked-in stubs are exactly what protos/generate.py makes from protos/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _generate_into(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", REPO / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.generate(out)


def test_checked_in_stubs_match_the_protos(tmp_path: Path) -> None:
    _generate_into(tmp_path)
    fresh = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert fresh, "the generator produced nothing"
    stale = [
        str(rel)
        for rel in sorted(fresh)
        if (REPO / rel).read_bytes() != (tmp_path / rel).read_bytes()
    ]
    assert not stale, f"stale generated stubs (run `make protos`): {stale}"
    checked_in = {p.relative_to(REPO) for p in (REPO / "synthloc").glob("*/*_pb2*")}
    assert checked_in <= fresh, f"stubs without a proto: {sorted(checked_in - fresh)}"


def test_services_have_the_methods_of_the_contract() -> None:
    from synthloc.v1 import localization_pb2, synthesis_pb2

    synth = synthesis_pb2.DESCRIPTOR.services_by_name["SynthesisService"]
    assert [m.name for m in synth.methods] == ["DescribeLibrary", "StreamBatches"]
    assert synth.methods_by_name["StreamBatches"].server_streaming
    loc = localization_pb2.DESCRIPTOR.services_by_name["LocalizationService"]
    stream = loc.methods_by_name["LocalizeStream"]
    assert stream.client_streaming and stream.server_streaming
    assert not loc.methods_by_name["Localize"].server_streaming
    assert synth.full_name == "synthloc.v1.SynthesisService"


def test_unset_recipe_fields_are_distinguishable_from_zero() -> None:
    from synthloc.v1 import synthesis_pb2

    recipe = synthesis_pb2.Recipe()
    assert not recipe.HasField("height")
    recipe.height = 0
    assert recipe.HasField("height")
    request = synthesis_pb2.StreamBatchesRequest()
    assert not request.HasField("recipe")
    assert request.WhichOneof("length") is None
    request.endless = True
    assert request.WhichOneof("length") == "endless"


def test_kserve_v2_service_keeps_its_wire_names() -> None:
    from synthloc.kserve import grpc_predict_v2_pb2

    service = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {m.name for m in service.methods} >= {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }
