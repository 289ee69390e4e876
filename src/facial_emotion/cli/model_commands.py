"""The commands that make and judge models: train, finetune, download, evaluate, calibrate, export,
quantize, ensemble. Each imports what it needs when it runs (torch only for those that train)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from facial_emotion.cli.errors import (
    EXIT_OK,
    MODEL_HELP,
    UserError,
    at_least,
    finite_float,
    model_output,
    needs_extra,
    output_folder,
)

CALIBRATE_SPLIT = "PublicTest"  # `calibrate`'s default: a FER-2013 csv's faces no model trains on


def _model_path(spec: str) -> Path:
    """A --model / --base as a path (a built-in model's name too)."""
    from facial_emotion.model_file import resolve_model_path

    return resolve_model_path(spec.strip())


def cmd_train(args: argparse.Namespace) -> int:
    with needs_extra("train", "training"):
        from facial_emotion.training.config import TrainConfig
        from facial_emotion.training.loop import train
    # Each option's dest is its TrainConfig field; options left out (None) keep TrainConfig's defaults,
    # which are the built-in model's recipe: one place for them. train() validates the config.
    if args.init_from:
        args.init_from = str(_model_path(args.init_from))
    if args.teacher:
        args.teacher = ",".join(str(_model_path(t)) for t in args.teacher.split(","))
    given = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None
    }
    if not args.resume and not args.data:
        raise UserError("train: --data is required (a --resume run reads its own)")
    # What the user typed, not argparse's defaults (--init-from "", --skip-bad off): a resumed run
    # checks these against its recipe. --device has its own override.
    asked = {k: v for k, v in given.items() if not (v is False or v == "") and k != "device"}
    result = train(
        TrainConfig(**given),
        Path(args.out),
        resume=args.resume,
        progress=not args.quiet and sys.stderr.isatty(),
        device_override=args.device if args.resume and args.device else "",
        asked=asked,
    )
    best = result["best"]
    if best is None:  # a torchrun rank other than 0: rank 0 reports
        return EXIT_OK
    if best["val_acc"] is None:
        print(f"no validation faces: the last epoch's {best['weights']} weights (epoch {best['epoch']})")
    else:
        print(
            f"best validation accuracy {best['val_acc']:.2%} (epoch {best['epoch']}, {best['weights']} weights)"
        )
    print(f"model: {result['model']}")
    return EXIT_OK


def cmd_finetune(args: argparse.Namespace) -> int:
    with needs_extra("train", "finetune"):
        from facial_emotion.training.finetune import FinetuneOptions, default_base, finetune
    opts = FinetuneOptions(
        feedback=Path(args.feedback),
        # the default base too: --out naming the built-in fp32 file replaced it without a word
        out=model_output(args.out, "--out", [_model_path(args.base) if args.base else default_base()]),
        base=args.base,
        fer2013=Path(args.fer2013) if args.fer2013 else None,
        skip_bad=args.skip_bad,
        mix=args.mix,
        epochs=args.epochs,
        lr=args.lr,
        eval_limit=args.eval_limit,
        threads=args.threads,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    result = finetune(opts)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    counts = ", ".join(f"{e} {n}" for e, n in result["per_emotion"].items())
    print(f"{result['corrections']} corrections ({counts}), base {result['base']}")
    sys.stdout.write(result["table"])
    print(f"model: {result['out']}")
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from facial_emotion.data import download

    dest = Path(args.to)
    if args.from_zip and args.kaggle_dataset:
        raise UserError(
            "--from-zip imports an archive you have; --kaggle-dataset names one to download: one or the other"
        )
    if args.from_zip:
        print(f"importing {args.from_zip} into {dest} ...", file=sys.stderr)
        result = download.import_archive(Path(args.from_zip), dest, args.allow_partial, args.force)
    else:
        dataset = args.kaggle_dataset or download.KAGGLE_DATASET
        result = download.download_kaggle(dest, dataset, args.allow_partial, args.force)
    counts = ", ".join(f"{split} {n:,}" for split, n in result.counts.items())
    print(f"FER-2013 ({result.layout} layout) in {result.path}: {counts}")
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"next: {result.train_command()}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from facial_emotion.evaluation.evaluate import compare, evaluate, write_report
    from facial_emotion.results.writers import print_json

    report = output_folder(args.report, "--report") if args.report else None
    if report is not None:  # before the evaluation, not after it (a report.json that is a folder)
        from facial_emotion.evaluation.evaluate import REPORT_FILES

        for name in REPORT_FILES:
            if (report / name).exists() and not (report / name).is_file():
                raise UserError(
                    f"--report {report}: {name} there is not a file: move it or choose another folder"
                )
    same = {"tta": args.tta, "skip_bad": args.skip_bad, "threads": args.threads, "labels": args.labels}
    if args.against:
        results, part, probs = compare(args.data, args.model, args.against, args.split, **same)
    else:
        results, part, probs = evaluate(args.data, args.model, args.split, **same)
    if report is not None:
        for path in write_report(results, part, probs, report):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print_json(results)
    else:
        from facial_emotion.evaluation.evaluate import describe, faces_text

        print(
            f"{describe(results)}: {faces_text(results['n'])}, accuracy {results['accuracy']:.2%}, macro F1 "
            f"{results['macro_f1']:.3f}"
            + (" (over the classes present)" if results.get("classes_without_faces") else "")
        )
        if results.get("ece") is not None:
            print(
                f"confidence: ECE {results['ece']:.2%}, NLL {results['nll']:.3f} ({results['calibration']}; raw "
                f"softmax: ECE {results['ece_uncalibrated']:.2%}, NLL {results['nll_uncalibrated']:.3f})"
            )
        elif results.get("confidence_note"):
            print(results["confidence_note"])
        print(f"{'emotion':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
        for c, r in results["per_class"].items():
            if r["support"] == 0:  # no faces: recall and F1 are undefined, not 0
                print(f"{c:<10}{r['precision']:>10.3f}{'—':>8}{'—':>8}{0:>9}")
            else:
                print(f"{c:<10}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{r['support']:>9}")
        if results.get("classes_without_faces"):
            print(f"no faces of {', '.join(results['classes_without_faces'])} in this split")
        if "against" in results:
            from facial_emotion.evaluation.evaluate import describe_comparison

            print(describe_comparison(results))
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from facial_emotion.evaluation.calibration import calibrate_model
    from facial_emotion.results.writers import print_json

    out = model_output(args.out, "--out") if args.out else None  # its own model's path: in place
    with needs_extra("train", "calibrate"):  # writing the model file needs the onnx package
        entry = calibrate_model(
            args.model,
            args.data,
            args.split,
            out,
            method=args.method,
            labels=args.labels,
        )
    if args.json:
        print_json(entry)
    else:
        print(
            f"{entry['method']} (ten-crop: {entry['method_tta']}) fitted on {entry['faces']} "
            f"{entry['fit_split']} faces: ECE "
            f"{entry['ece_before']:.2%} -> {entry['ece_after']:.2%} ({entry['ece_after_crossfit']:.2%} "
            f"cross-fitted), ten-crop {entry['ece_tta_before']:.2%} -> {entry['ece_tta_after']:.2%}; NLL "
            f"{entry['nll_before']:.3f} -> {entry['nll_after']:.3f}; accuracy {entry['accuracy_before']:.2%} "
            f"-> {entry['accuracy_after']:.2%}; faces under {entry['uncertain_below']:.0%} confidence are "
            "flagged uncertain" + (f" ({entry['method_why']})" if "method_why" in entry else "")
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    with needs_extra("train", "export"):
        from facial_emotion.training.export import export_checkpoint
    if not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: checkpoint not found")
    out = export_checkpoint(
        Path(args.checkpoint), model_output(args.out, "--out", [args.checkpoint]), int8=args.int8
    )
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return EXIT_OK


def cmd_quantize(args: argparse.Namespace) -> int:
    with needs_extra("train", "quantize"):
        from facial_emotion.training.quantize import quantize_model
    out = model_output(args.out, "--out", [_model_path(args.model)])
    meta = quantize_model(
        args.model,
        out,
        args.data,
        method=args.method,
        activations=args.activations,
        faces=args.faces,
        split=args.split,
        eval_split=args.eval_split,
        reduce_range=not args.full_range,
    )
    q = meta["quantized"]
    calibration = q["calibration"]
    print(
        f"wrote {out} and {out.with_suffix('.json')}: {q['method']} ranges from {calibration['faces']} "
        f"{calibration['split']} faces"
    )
    if "accuracy" in q:
        a = q["accuracy"]
        print(
            f"{a['split']} accuracy {a['before']:.2%} -> {a['after']:.2%}, "
            f"ten-crop TTA {a['before_tta']:.2%} -> {a['after_tta']:.2%}"
        )
    # a FER-2013 csv (its accuracy measured on PrivateTest) has calibrate's default split; other
    # data names the split the accuracy was measured on
    measured = q.get("accuracy", {}).get("split", "SPLIT")
    split = "" if measured in (CALIBRATE_SPLIT, "PrivateTest") else f" --split {measured}"
    print(
        f"uncalibrated: for calibrated confidences, facial-emotion calibrate {out} --data {args.data}{split}"
    )
    return EXIT_OK


def cmd_ensemble(args: argparse.Namespace) -> int:
    with needs_extra("train", "ensemble"):
        from facial_emotion.training.ensemble import build_ensemble
    members = [_model_path(m) for m in args.models]
    out = model_output(args.out, "--out", members)
    meta = build_ensemble(members, out)
    print(f"wrote {out} and {out.with_suffix('.json')}: the mean of {len(meta['members'])} models")
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on FER-2013 / FER+ / your folders and export it to ONNX",
        description="Options left out take the built-in model's recipe (see scripts/train_builtin.sh).",
    )
    p.add_argument(
        "--data",
        help="fer2013.csv(.gz), a Kaggle-layout folder, or ROOT/<emotion>/ images (with --resume: the "
        "run's own unless given, e.g. the same faces at another path)",
    )
    p.add_argument(
        "--labels",
        choices=["fer2013", "ferplus", "ferplus8"],
        help="fer2013 (default); ferplus: FER+ vote distributions; ferplus8: the same with contempt (8 classes)",
    )
    p.add_argument(
        "--ferplus-mix", type=finite_float, help="blend FER+ vote distributions into the targets (0..1)"
    )
    p.add_argument(
        "--logit-adjust",
        type=finite_float,
        metavar="TAU",
        help="class-balanced loss: add TAU * log(class prior) to the logits in the loss (1 = full; 0 = off)",
    )
    p.add_argument(
        "--teacher",
        help="distil from these models: comma list of .onnx files or built-in models' names, or of teacher "
        "probabilities .npz files computed before for the same faces (with --distill)",
    )
    p.add_argument(
        "--distill",
        type=finite_float,
        help="weight of the teachers' ten-crop probabilities in the targets (0..1)",
    )
    p.add_argument(
        "--distill-temperature", type=finite_float, help="soften the teachers' probabilities (default 1)"
    )
    p.add_argument("--arch", help="architecture: vgg-s, vgg-m, vgg-l, resnet-s, resnet-m, resnet18")
    p.add_argument("--epochs", type=at_least(1))
    p.add_argument("--batch-size", type=at_least(1))
    p.add_argument(
        "--lr",
        type=finite_float,
        help="peak learning rate of the one-cycle schedule (swa: the constant rate)",
    )
    p.add_argument("--momentum", type=finite_float, help="SGD momentum (one-cycle: its peak)")
    p.add_argument(
        "--schedule",
        choices=["onecycle", "swa"],
        help="onecycle (default), or swa: constant lr, weights averaged every epoch (after --init-from)",
    )
    p.add_argument("--weight-decay", type=finite_float)
    p.add_argument(
        "--label-smoothing",
        type=finite_float,
        help="of the FER-2013 labels (default 0.1); FER+ vote targets (--labels ferplus) are soft already",
    )
    p.add_argument("--mixup", type=finite_float, help="mixup Beta(a, a); 0 = off")
    p.add_argument("--ema", dest="ema_decay", type=finite_float, help="EMA decay of the weights; 0 = off")
    p.add_argument("--train-split", help="comma list of splits to train on (default Training / train)")
    p.add_argument(
        "--val-split",
        help="split to choose the best epoch on (default PublicTest / test / 10%% hold-out); 'holdout': "
        "10%% of the training faces, so the test split stays unseen; 'none'",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="auto = bf16 where the device has native bf16 (AMX or AVX512-BF16 CPUs, GPUs from Ampere on)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="auto (default) = a CUDA GPU where torch sees one, else the CPU; with --resume, moves the run",
    )
    p.add_argument("--out", default="runs/train", help="run folder: checkpoints, logs, curves, model.onnx")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--init-from",
        default="",
        help="start from these weights: a run's best.pt / last.pt, or a model .onnx file or built-in "
        "fp32 model's name (fp32): a second stage or fine-tuning",
    )
    p.add_argument("--seed", type=at_least(0))
    p.add_argument("--threads", type=at_least(0), help="torch threads (default: torch's choice)")
    p.add_argument(
        "--limit", type=at_least(0), help="train on N faces drawn at random (seeded) only (smoke tests)"
    )
    p.add_argument("--skip-bad", action="store_true", help="skip malformed csv rows instead of failing")
    p.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "download",
        help="get FER-2013: from Kaggle with your credentials, or from an archive you downloaded",
        description="Without Kaggle credentials: download archive.zip by hand from "
        "https://www.kaggle.com/datasets/msambare/fer2013 and use --from-zip.",
    )
    p.add_argument("dataset", choices=["fer2013"])
    p.add_argument("--to", default="data/fer2013", help="target folder (default data/fer2013)")
    p.add_argument(
        "--from-zip",
        metavar="ARCHIVE",
        help="import this .zip / .tar.gz / folder (csv or folder layout) or a bare fer2013.csv(.gz)",
    )
    p.add_argument("--kaggle-dataset", help="Kaggle dataset to download (default msambare/fer2013)")
    p.add_argument("--allow-partial", action="store_true", help="import an incomplete archive anyway")
    p.add_argument("--force", action="store_true", help="replace a non-empty --to folder")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "evaluate", help="accuracy, per-class report and confusion matrix of a model on a dataset"
    )
    p.add_argument("--data", required=True)
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--split",
        help="csv Usage or sub-folder (default: PrivateTest, else PublicTest, test, val, else all: every "
        "face); faces the model trained on, as its metadata tells (its dataset's name and training "
        "split), are warned about",
    )
    p.add_argument("--tta", action="store_true", help="ten-crop test-time augmentation")
    p.add_argument(
        "--labels",
        choices=["fer2013", "ferplus"],
        default="fer2013",
        help="ferplus: score against each face's FER+ majority vote (fer2013new.csv beside the csv; "
        "an 8-class model on all eight classes)",
    )
    p.add_argument(
        "--against",
        metavar="MODEL",
        help="also score this model (a file or built-in name) on the same faces, the same way, and compare "
        "the two face by face: the faces only one gets right, the sign test on them, and the accuracy "
        "difference with its 95 %% interval (JSON key against)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write confusion matrices, report.md/json, the reliability diagram (when the model's classes "
        "are the labels') and the most confident mistakes (if any); report files a run does not write "
        "are removed from DIR",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip malformed csv rows instead of failing")
    p.add_argument("--threads", type=at_least(0), default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on your corrections (from `correct` or the page) and show before/after",
    )
    p.add_argument("--feedback", required=True, metavar="DIR", help="the feedback folder of corrections")
    p.add_argument("--out", required=True, metavar="MODEL.onnx", help="where to write the new model")
    p.add_argument("--base", help="model to start from (default: the built-in fp32 model)")
    p.add_argument(
        "--fer2013",
        metavar="CSV",
        help="FER-2013 csv to mix in so it does not forget, and to measure PublicTest "
        "(default: $FACIAL_EMOTION_SHARED/datasets/fer2013/fer2013.csv.gz)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip malformed --fer2013 rows instead of failing")
    p.add_argument(
        "--mix", type=at_least(0), default=3000, help="FER-2013 training faces mixed in (default 3000)"
    )
    p.add_argument("--epochs", type=at_least(1), default=3, help="default 3")
    p.add_argument("--lr", type=finite_float, default=0.01, help="peak learning rate (default 0.01)")
    p.add_argument(
        "--eval-limit", type=at_least(0), default=0, metavar="N", help="first N PublicTest faces only"
    )
    p.add_argument(
        "--threads", type=at_least(0), default=0, help="torch/onnxruntime threads (default: all cores)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "calibrate",
        help="fit a model's confidence calibration on a labelled split and store it",
        description="Vector scaling (a scale and a bias per class) or one temperature, fitted by NLL on "
        "--split (PublicTest by default; never PrivateTest), for plain and ten-crop inference. "
        "Confidences match accuracy better; a temperature never changes a centre crop's label "
        "(ten-crop: rarely, a near tie), vector scaling can where two classes are nearly tied. "
        "Also sets the confidence under which a face is flagged uncertain.",
    )
    p.add_argument("model", help="model file (or a built-in model's name) to calibrate")
    p.add_argument(
        "--data", required=True, help="fer2013.csv(.gz), or a folder of labelled faces with --split"
    )
    p.add_argument(
        "--split",
        default=CALIBRATE_SPLIT,
        help=f"faces the model never trained on (default {CALIBRATE_SPLIT}; a Kaggle-layout folder's test/ holds "
        "PublicTest and PrivateTest together)",
    )
    p.add_argument(
        "--out",
        help="write the calibrated model here (default: rewrite MODEL in place; required for the "
        "package's built-in models)",
    )
    p.add_argument(
        "--method",
        choices=("auto", "vector", "temperature"),
        default="auto",
        help="vector scaling (a scale and a bias per class; needs 20 faces of each), one temperature, or "
        "auto (default): vector scaling unless, cross-fitted, it costs accuracy; chosen for plain and "
        "ten-crop inference each",
    )
    p.add_argument(
        "--labels",
        choices=("fer2013", "ferplus"),
        help="fer2013, or ferplus: the FER+ majority vote (fer2013new.csv beside the csv; the default for "
        "an 8-class model)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("export", help="export a training checkpoint to the ONNX model file")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="MODEL.onnx (metadata is also written to MODEL.json)")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantization of the weights")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "quantize",
        help="int8 static quantization of a model file, calibrated on training faces ([train] extra)",
        description="Writes OUT.onnx and OUT.json with the model's metadata, how it was quantized, and the "
        "accuracy on the data's test split before and after.",
    )
    p.add_argument("model", help="model file, or a built-in model's name (fp32: the built-in fp32 model)")
    p.add_argument(
        "--data", required=True, help="dataset to calibrate on and measure with (fer2013.csv.gz...)"
    )
    p.add_argument(
        "--out", required=True, help="MODEL-int8.onnx (metadata is also written to MODEL-int8.json)"
    )
    p.add_argument("--method", choices=["minmax", "percentile"], default="minmax", help="activation ranges")
    p.add_argument("--activations", choices=["uint8", "int8"], default="uint8")
    p.add_argument(
        "--full-range",
        action="store_true",
        help="8-bit weights instead of 7: exact only on CPUs with VNNI; AVX2 saturates their sums",
    )
    p.add_argument("--faces", type=at_least(64), default=2048, help="calibration faces (whole batches of 64)")
    p.add_argument("--split", help="split to calibrate on (default Training / train)")
    p.add_argument(
        "--eval-split", help="accuracy before and after on this split (default: the test split; 'none': skip)"
    )
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser(
        "ensemble",
        help="average several model files inside one ONNX graph ([train] extra)",
        description="Writes OUT.onnx and OUT.json: one graph whose probabilities are the mean of the "
        "members'. The members must share classes and preprocessing; calibrate (and quantize) the result.",
    )
    p.add_argument("models", nargs="+", help="two or more model files (or built-in model names)")
    p.add_argument(
        "--out",
        required=True,
        help="ENSEMBLE.onnx (metadata, naming every member's data and labels, also in ENSEMBLE.json)",
    )
    p.set_defaults(func=cmd_ensemble)
