"""The transport floor for benchmarks/infer_compare.py: LocalizationService answering at once.

    python benchmarks/echo_server.py PORT

Same proto, same gRPC server type and message limit as the service, no work: Localize returns
an empty answer. Its p50 is what any Python gRPC service pays to receive a 512x512 tensor and
answer on this machine.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

from synthloc.v1 import localization_pb2, localization_pb2_grpc


class Echo(localization_pb2_grpc.LocalizationServiceServicer):
    """Answers Localize with an empty response."""

    def Localize(
        self, request: localization_pb2.LocalizeRequest, context: grpc.ServicerContext
    ) -> localization_pb2.LocalizeResponse:
        return localization_pb2.LocalizeResponse(request_id=request.request_id)


def main() -> int:
    limit = 64 << 20
    server = grpc.server(
        ThreadPoolExecutor(32),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    localization_pb2_grpc.add_LocalizationServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
