"""The thin gRPC layer of SynthesisService: decode, call the engine, forward bytes."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from synth_service.engine import StreamControl, SynthesisEngine
from synth_service.metrics import SynthMetrics
from synthloc.v1 import synthesis_pb2

SERVICE_NAME = "synthloc.v1.SynthesisService"


class SynthesisServicer:
    """DescribeLibrary and StreamBatches over one engine."""

    def __init__(self, engine: SynthesisEngine, metrics: SynthMetrics) -> None:
        self._engine = engine
        self._metrics = metrics

    def DescribeLibrary(
        self, request: synthesis_pb2.DescribeLibraryRequest, context: grpc.ServicerContext
    ) -> synthesis_pb2.LibraryDescription:
        return self._engine.describe()

    def StreamBatches(
        self, request: synthesis_pb2.StreamBatchesRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        plan = self._engine.plan(request)
        stream = StreamControl()
        # Fires when the call ends for any reason, cancellation included: drop queued work now
        # rather than when this generator is garbage-collected.
        context.add_callback(stream.cancel)
        self._metrics.active_streams.inc()
        try:
            for data, samples, seconds in self._engine.run(plan, stream):
                self._metrics.images.inc(samples)
                self._metrics.bytes.inc(len(data))
                for _ in range(samples):
                    self._metrics.compose_seconds.observe(seconds / samples)
                yield data
        finally:
            self._metrics.active_streams.dec()


def generic_handler(servicer: SynthesisServicer) -> grpc.GenericRpcHandler:
    """Method handlers; StreamBatches sends the Batch bytes the workers already serialized."""
    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "DescribeLibrary": grpc.unary_unary_rpc_method_handler(
                servicer.DescribeLibrary,
                request_deserializer=synthesis_pb2.DescribeLibraryRequest.FromString,
                response_serializer=synthesis_pb2.LibraryDescription.SerializeToString,
            ),
            "StreamBatches": grpc.unary_stream_rpc_method_handler(
                servicer.StreamBatches,
                request_deserializer=synthesis_pb2.StreamBatchesRequest.FromString,
                response_serializer=bytes,
            ),
        },
    )
