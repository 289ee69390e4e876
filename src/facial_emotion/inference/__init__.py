"""Inference: decode -> detect -> align -> classify (onnxruntime). Never imports torch or training."""
