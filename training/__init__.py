"""Training: learn detectors and CAM localizers from the synthesis stream or real COCO data,
evaluate them on real images and export ONNX. The only room that imports torch."""
