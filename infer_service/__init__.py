"""Inference service: ONNX localizers on ONNX Runtime (CUDA, else CPU) behind gRPC, with a model
repository and dynamic batching. Never imports torch, training or synth_service."""
