"""Export trained models (ONNX, torch.export, int8)."""
