"""Export: PyTorch -> ONNX (and, with TensorRT present, ONNX -> engine)."""
