"""Several model files averaged inside one ONNX graph (``facial-emotion ensemble A.onnx B.onnx ...``).

The members' graphs are copied side by side, each name prefixed by ``m<i>_``, all reading the one
``pixels`` input; each member's logits go through a softmax, the probabilities are averaged
(ONNX ``Mean``), and the graph returns their logarithm as its ``logits``. So softmax(logits) is
exactly the mean of the members' probabilities, and everything downstream (calibration, ten-crop
TTA, quantization, every inference path) treats the ensemble as one model. onnxruntime runs the
members one after another within a call, so its cost is the sum of theirs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from facial_emotion.model_file import CALIBRATION_KEY, make_metadata, write_model
from facial_emotion.training.checkpoint import CheckpointError
from facial_emotion.training.onnx_weights import read_onnx_model

INPUT, OUTPUT = "pixels", "logits"  # the names training/export.py gives every model's graph
PROB_FLOOR = 1e-30  # log(0) would put -inf in the logits


def _member_summary(path: Path, meta: dict[str, Any], digest: str) -> dict[str, Any]:
    keys = (
        "arch",
        "parameters",
        "val_accuracy",
        "best_epoch",
        "epochs",
        "train_machine",
        "dataset",
        "train_split",  # with the dataset: whether a split holds faces a member trained on
        "labels",
    )
    return {
        "file": path.name,
        "sha256": digest,
        **{k: meta[k] for k in keys if k in meta},
    }


def _copy_prefixed(graph: Any, prefix: str, target: Any) -> None:
    """Append ``graph``'s nodes and initializers to ``target`` with every name prefixed, except the
    shared input."""

    def rename(name: str) -> str:
        return name if name in ("", INPUT) else prefix + name

    for init in graph.initializer:
        copy = target.initializer.add()
        copy.CopyFrom(init)
        copy.name = rename(init.name)
    taken = {n.name for n in target.node}
    for j, node in enumerate(graph.node):
        copy = target.node.add()
        copy.CopyFrom(node)
        # Unique names: quantize_dynamic leaves nodes unnamed, and two "Reshape"s made a file that
        # the checker passed and onnxruntime refused to load.
        base = name = prefix + (node.name or node.op_type)
        k = j
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        copy.name = name
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]


def ensemble_bytes(models: list[Any]) -> bytes:
    """One ONNX graph averaging the probabilities of ``models`` (loaded onnx ModelProtos)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([], "ensemble", [models[0].graph.input[0]], [])
    opsets: dict[str, int] = {}
    for i, model in enumerate(models):
        if [x.name for x in model.graph.input] != [INPUT] or [x.name for x in model.graph.output] != [OUTPUT]:
            raise CheckpointError(f"member {i + 1}: expected one input {INPUT!r} and one output {OUTPUT!r}")
        _copy_prefixed(model.graph, f"m{i}_", graph)
        graph.node.append(helper.make_node("Softmax", [f"m{i}_{OUTPUT}"], [f"m{i}_probs"], axis=1))
        for opset in model.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    graph.initializer.append(helper.make_tensor("prob_floor", TensorProto.FLOAT, [], [PROB_FLOOR]))
    graph.node.extend(
        [
            helper.make_node("Mean", [f"m{i}_probs" for i in range(len(models))], ["mean_probs"]),
            helper.make_node("Max", ["mean_probs", "prob_floor"], ["floored_probs"]),
            helper.make_node("Log", ["floored_probs"], [OUTPUT]),
        ]
    )
    graph.output.append(models[0].graph.output[0])
    merged = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    merged.ir_version = max(m.ir_version for m in models)
    onnx.checker.check_model(merged)
    data = merged.SerializeToString()
    import onnxruntime as ort

    try:  # what the checker does not see (duplicate node names...): never write a file that fails
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types
        raise CheckpointError(f"the merged graph does not load ({str(e).splitlines()[0]})") from None
    return data


def _all_of(loaded: list[tuple[Any, dict[str, Any]]], key: str) -> str:
    """The members' values of ``key``, each once in member order, joined by " + "."""
    return " + ".join(dict.fromkeys(str(meta[key]) for _, meta in loaded if meta.get(key)))


def build_ensemble(members: list[Path], out: Path) -> dict[str, Any]:
    """Write the ensemble of the ``members`` model files to ``out`` (+ .json); returns its metadata.
    The members must agree on classes and preprocessing; their own calibrations do not carry over
    (calibrate the ensemble itself)."""
    if len(members) < 2:
        raise CheckpointError("an ensemble needs at least two model files")
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import ModelFileError

    seen: dict[str, Path] = {}  # each member's SHA-256 -> its file
    digests: list[str] = []
    for path in members:
        try:  # the classifier's checks, graph against description: a member whose graph gives 8
            EmotionClassifier(path, threads=1)  # outputs for 7 classes failed as "does not load"
        except ModelFileError as e:
            raise CheckpointError(str(e)) from None
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest in seen:  # one net twice weighs it double, and is no ensemble
            raise CheckpointError(f"{path} is the same model file as {seen[digest]}")
        seen[digest] = path
        digests.append(digest)
    loaded = [read_onnx_model(p) for p in members]
    first = loaded[0][1]
    for path, (_, meta) in zip(members, loaded, strict=True):
        for key in ("classes", "face_size", "crop"):
            if meta.get(key) != first.get(key):
                raise CheckpointError(
                    f"{path}: {key} {meta.get(key)} differs from {members[0]}'s {first.get(key)}"
                )
    summaries = [_member_summary(p, m, d) for p, (_, m), d in zip(members, loaded, digests, strict=True)]
    meta = make_metadata(
        classes=first["classes"],
        face_size=first["face_size"],
        crop=first["crop"],
        arch="ensemble",
        output="logits N x classes: the log of the mean of the members' probabilities",
        members=summaries,
        parameters=sum(s.get("parameters", 0) for s in summaries),
        # what every member trained on (the first member's alone hid a member trained elsewhere)
        dataset=_all_of(loaded, "dataset"),
        labels=_all_of(loaded, "labels"),
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    meta.pop(CALIBRATION_KEY, None)
    quantized = [
        s["file"] for s, (_, m) in zip(summaries, loaded, strict=True) if m.get("quantized", "none") != "none"
    ]
    if quantized:  # so that `quantize` refuses it (quantizing int8 parts again makes a broken graph)
        meta["quantized"] = {"scheme": f"int8 members ({', '.join(quantized)})"}
    write_model(out, ensemble_bytes([model for model, _ in loaded]), meta)
    return meta
