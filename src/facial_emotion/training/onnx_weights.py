"""An exported ONNX model file back as trainable weights, for ``train --init-from MODEL.onnx``.

Export folds every BatchNorm into the conv before it (a conv with a bias), so the file has no BN
parameters left. To train again the net needs its BatchNorms, with statistics that fit: each BN gets
the mean and variance of its input, measured on training faces, as running statistics, and the scale
and shift that make BN(conv(x)) equal the exported conv-with-bias. The rebuilt net computes what the
file computes (checked against onnxruntime before training starts), and its BNs start from the
statistics they will see, so the first training steps do not shake the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facial_emotion.model_file import ModelFileError, read_metadata_from_session_meta
from facial_emotion.training.augment import center_crop
from facial_emotion.training.checkpoint import CheckpointError
from facial_emotion.training.nets import create_model


def read_onnx_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """The ONNX graph and our metadata; CheckpointError for a file that is not one of our models."""
    import onnx

    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: model file not found") from None
    except Exception as e:  # protobuf raises DecodeError and friends for damaged files
        raise CheckpointError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0]})") from None
    props = {p.key: p.value for p in model.metadata_props}
    try:  # the same checks as the classifier's, so no command writes a model it would refuse
        return model, read_metadata_from_session_meta(props, str(path))
    except ModelFileError as e:
        raise CheckpointError(str(e)) from None


def _layer_weights(
    graph: Any,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    """(weight, bias) of each Conv and each Gemm (linear) node, in graph order."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    # The exporter stores equal tensors once and names the copies through Identity nodes (an
    # untrained net's folded BatchNorm biases are all equal): a copy's name led to no initializer.
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    convs: list[tuple[np.ndarray, np.ndarray]] = []
    linears: list[tuple[np.ndarray, np.ndarray]] = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        weight = inits[node.input[1]]
        bias = inits[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0], np.float32)
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            weight = weight.T
        (convs if node.op_type == "Conv" else linears).append((weight, bias))
    return convs, linears


@torch.no_grad()
def weights_from_onnx(
    path: Path, arch: str, faces: torch.Tensor, crop: int
) -> tuple[dict[str, Any], list[str]]:
    """State dict of ``arch`` rebuilt from the ONNX file at ``path``, and the file's classes (the
    head's rows, in order); ``faces`` (uint8 N x 1 x 48 x 48 training faces, a few thousand) give the
    BatchNorm statistics."""
    onnx_model, meta = read_onnx_model(path)
    if meta.get("quantized", "none") != "none":
        raise CheckpointError(
            f"--init-from {path}: an int8-quantized model; start from the fp32 file it was made from "
            "(the built-in one: src/facial_emotion/weights/emotion-fp32.onnx)"
        )
    file_arch, classes = meta.get("arch"), list(meta.get("classes", []))
    if file_arch != arch or int(meta.get("crop", 0)) != crop:
        raise CheckpointError(
            f"--init-from {path}: a {file_arch} model on {meta.get('crop')}px crops, "
            f"this run trains {arch} on {crop}px"
        )
    model = create_model(arch, len(classes)).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    conv_w, linear_w = _layer_weights(onnx_model.graph)
    # Our nets put one BatchNorm right after every conv, in the order the graph runs them.
    shapes_fit = (
        len(conv_w) == len(convs) == len(norms)
        and len(linear_w) == len(linears)
        and all(w.shape == tuple(m.weight.shape) for (w, _), m in zip(conv_w, convs, strict=False))
        and all(w.shape == tuple(m.weight.shape) for (w, _), m in zip(linear_w, linears, strict=False))
    )
    if not shapes_fit:
        raise CheckpointError(f"--init-from {path}: its layers do not fit a {arch} net")

    # First BN = identity plus the folded bias, so the net computes the file's function ...
    for (w, b), conv, bn in zip(conv_w, convs, norms, strict=True):
        assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats=True
        conv.weight.copy_(torch.tensor(w))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
        bn.bias.copy_(torch.tensor(b))
    for (w, b), linear in zip(linear_w, linears, strict=True):
        linear.weight.copy_(torch.tensor(w))
        linear.bias.copy_(torch.tensor(b))

    # ... then measure each BN's input statistics and re-express it with them (same function).
    sums: dict[nn.Module, list[torch.Tensor]] = {bn: [] for bn in norms}

    def record(bn: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0].double()
        sums[bn].append(
            torch.stack(
                [x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), torch.full_like(x[0, :, 0, 0], x[:, 0].numel())]
            )
        )

    hooks = [bn.register_forward_hook(record) for bn in norms]
    x = center_crop(faces, crop)
    for i in range(0, len(x), 256):
        model(x[i : i + 256])
    for h in hooks:
        h.remove()
    for bn in norms:
        assert bn.running_mean is not None and bn.running_var is not None
        total = torch.stack(sums[bn]).sum(0)
        mean = total[0] / total[2]
        var = (total[1] / total[2] - mean * mean).clamp_min(1e-6)
        bn.bias.copy_((bn.bias.double() + mean).float())
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())

    _check_same_outputs(model, onnx_model, x[:64], path)
    return model.state_dict(), classes


def _check_same_outputs(model: nn.Module, onnx_model: Any, x: torch.Tensor, path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    got = model(x).numpy()
    if not np.allclose(got, want, atol=1e-3, rtol=1e-3):
        raise CheckpointError(
            f"--init-from {path}: the rebuilt net differs from the file (max |diff| {np.abs(got - want).max():.3g})"
        )
