"""Synthesis service: cut annotated objects out of real images, paste them onto cleaned real
backgrounds, stream deterministic exhaustively annotated batches over gRPC. numpy/OpenCV only:
never imports torch, training or infer_service."""
