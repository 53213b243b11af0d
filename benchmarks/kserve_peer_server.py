"""The peer for benchmarks/kserve_side_by_side.py: one ONNX model behind KServe's ModelServer.

Run with a Python that has `kserve` and `onnxruntime` (not synthloc's venv: kserve pins an
older protobuf). It serves the v2 gRPC protocol; every predict runs one ONNX Runtime session
call on the request's `image` tensor, the way a KServe user would write it. By default with
ONNX Runtime's default session options; --no-spin and --intra-op-threads give it the options
synthloc's service uses, to compare like with like. --cuda runs it on the CUDA provider, as a
KServe user would ask for it (with --no-spin also cuDNN's heuristic search, like synthloc).
"""

from __future__ import annotations

import argparse

import kserve
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse


class OnnxModel(kserve.Model):
    """ONNX Runtime session as a kserve.Model."""

    def __init__(
        self, name: str, path: str, spin: bool = True, threads: int = 0, cuda: bool = False
    ) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = threads
        providers: list = ["CPUExecutionProvider"]
        if cuda:
            search = {"cudnn_conv_algo_search": "HEURISTIC"} if not spin else {}
            providers.insert(0, ("CUDAExecutionProvider", search))
        self.session = ort.InferenceSession(path, options, providers=providers)
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise SystemExit("asked for CUDA, ONNX Runtime fell back to the CPU")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        image = payload.inputs[0].as_numpy()
        values = self.session.run(self.output_names, {"image": image})
        outputs = []
        for name, value in zip(self.output_names, values, strict=True):
            output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(value, binary_data=True)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", default="det")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--no-spin", action="store_true", help="ONNX Runtime threads sleep")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="0: ONNX Runtime's")
    parser.add_argument("--cuda", action="store_true", help="the CUDA provider")
    args = parser.parse_args()
    model = OnnxModel(args.name, args.model, not args.no_spin, args.intra_op_threads, args.cuda)
    kserve.ModelServer(grpc_port=args.grpc_port, http_port=args.http_port, workers=1).start([model])
