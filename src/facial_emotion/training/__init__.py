"""Training: nets, augmentation, the loop and ONNX export. The only part of the package using torch."""
