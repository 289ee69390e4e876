"""The ``facial-emotion`` command. One thin function per subcommand: parse -> call the pipeline ->
write through ``results``. Heavy imports happen inside them, so ``analyze`` never loads torch and
``--help`` loads neither OpenCV nor onnxruntime.

Exit codes: 0 success, 1 some inputs failed (others were still processed), 2 usage or data error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from facial_emotion import __version__
from facial_emotion.settings import DEFAULT_DETECT_EVERY

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
MODEL_HELP = (
    "ONNX model file, or a built-in model's name: default (int8), fp32, ensemble, fast (default: "
    "$FACIAL_EMOTION_MODEL, else default)"
)


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class MissingDependency(UserError):
    """An optional package that this command needs is not installed."""


# Every exception type that means 'bad input', not 'bug', by module. A module that was never imported
# cannot have raised, so only loaded modules are looked at: an error path never imports torch.
_USER_ERRORS = {
    "facial_emotion.settings": ("SettingsError",),
    "facial_emotion.data.dataset": ("DatasetError",),
    "facial_emotion.data.download": ("DownloadError",),
    "facial_emotion.inference.decode": ("ImageError",),
    "facial_emotion.inference.detectors": ("DetectorError",),
    "facial_emotion.inference.video": ("VideoError",),
    "facial_emotion.model_file": ("ModelFileError",),
    "facial_emotion.results.media": ("MediaError",),
    "facial_emotion.training.config": ("ConfigError",),
    "facial_emotion.training.checkpoint": ("CheckpointError",),
    "facial_emotion.service.webhook": ("WebhookError",),
    "facial_emotion.batch.job": ("BatchError",),
    "facial_emotion.feedback": ("FeedbackError",),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UserError]
    for module, names in _USER_ERRORS.items():
        if module in sys.modules:
            errors += [getattr(sys.modules[module], name) for name in names]
    return tuple(errors)


@contextlib.contextmanager
def needs_extra(extra: str, command: str) -> Iterator[None]:
    """An optional package that ``command`` needs is missing: one line naming the extra that brings it."""
    try:
        yield
    except ImportError as e:
        raise MissingDependency(
            f"{command} needs the [{extra}] extra ({e.name} is missing): pip install 'facial-emotion[{extra}]'"
        ) from None


# --- train / evaluate / export ---------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    with needs_extra("train", "training"):
        from facial_emotion.training.config import TrainConfig
        from facial_emotion.training.loop import train
    # Each option's dest is its TrainConfig field; options left out (None) keep TrainConfig's defaults,
    # which are the built-in model's recipe: one place for them. train() validates the config.
    given = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None
    }
    result = train(
        TrainConfig(**given),
        Path(args.out),
        resume=args.resume,
        progress=not args.quiet,
        device_override=args.device if args.resume and args.device else "",
    )
    best = result["best"]
    if best is None:  # a torchrun rank other than 0: rank 0 reports
        return EXIT_OK
    print(
        f"best validation accuracy {best['val_acc']:.2%} (epoch {best['epoch']}, {best['weights']} weights)"
    )
    print(f"model: {result['model']}")
    return EXIT_OK


def cmd_finetune(args: argparse.Namespace) -> int:
    with needs_extra("train", "finetune"):
        from facial_emotion.training.finetune import FinetuneOptions, finetune
    opts = FinetuneOptions(
        feedback=Path(args.feedback),
        out=Path(args.out),
        base=args.base,
        fer2013=Path(args.fer2013) if args.fer2013 else None,
        mix=args.mix,
        epochs=args.epochs,
        lr=args.lr,
        eval_limit=args.eval_limit,
        threads=args.threads,
        progress=not args.quiet,
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
    if args.from_zip:
        print(f"importing {args.from_zip} into {dest} ...", file=sys.stderr)
        result = download.import_archive(Path(args.from_zip), dest, args.allow_partial, args.force)
    else:
        result = download.download_kaggle(dest, args.kaggle_dataset, args.allow_partial, args.force)
    counts = ", ".join(f"{split} {n:,}" for split, n in result.counts.items())
    print(f"FER-2013 ({result.layout} layout) in {result.path}: {counts}")
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"next: {result.train_command()}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from facial_emotion.evaluation.evaluate import evaluate, write_report
    from facial_emotion.results.writers import print_json

    results, part, probs = evaluate(
        args.data,
        args.model,
        args.split,
        tta=args.tta,
        skip_bad=args.skip_bad,
        threads=args.threads,
        labels=args.labels,
    )
    if args.report:
        for path in write_report(results, part, probs, Path(args.report)):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print_json(results)
    else:
        print(
            f"{results['dataset']} [{results['split']}]: {results['n']} faces, accuracy {results['accuracy']:.2%}"
            f" ({'ten-crop TTA' if args.tta else 'centre crop'}), macro F1 {results['macro_f1']:.3f}"
        )
        print(f"{'emotion':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
        for c, r in results["per_class"].items():
            print(f"{c:<10}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{r['support']:>9}")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from facial_emotion.evaluation.calibration import calibrate_model
    from facial_emotion.results.writers import print_json

    with needs_extra("train", "calibrate"):  # writing the model file needs the onnx package
        entry = calibrate_model(
            args.model, args.data, args.split, Path(args.out) if args.out else None, method=args.method
        )
    if args.json:
        print_json(entry)
    else:
        print(
            f"{entry['method']} fitted on {entry['faces']} {entry['fit_split']} faces: ECE "
            f"{entry['ece_before']:.2%} -> {entry['ece_after']:.2%} ({entry['ece_after_crossfit']:.2%} "
            f"cross-fitted), ten-crop {entry['ece_tta_before']:.2%} -> {entry['ece_tta_after']:.2%}; NLL "
            f"{entry['nll_before']:.3f} -> {entry['nll_after']:.3f}; accuracy {entry['accuracy_before']:.2%} "
            f"-> {entry['accuracy_after']:.2%}; faces under {entry['uncertain_below']:.0%} confidence are "
            "flagged uncertain"
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    with needs_extra("train", "export"):
        from facial_emotion.training.export import export_checkpoint
    if not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: checkpoint not found")
    out = export_checkpoint(Path(args.checkpoint), Path(args.out), int8=args.int8)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return EXIT_OK


def cmd_quantize(args: argparse.Namespace) -> int:
    with needs_extra("train", "quantize"):
        from facial_emotion.training.quantize import quantize_model
    out = Path(args.out)
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
    return EXIT_OK


def cmd_ensemble(args: argparse.Namespace) -> int:
    with needs_extra("train", "ensemble"):
        from facial_emotion.training.ensemble import build_ensemble
    from facial_emotion.model_file import resolve_model_path

    out = Path(args.out)
    meta = build_ensemble([resolve_model_path(m) for m in args.models], out)
    print(f"wrote {out} and {out.with_suffix('.json')}: the mean of {len(meta['members'])} models")
    return EXIT_OK


# --- analyze / video / webcam -----------------------------------------------------------------------


def _expand_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """(image paths, folders among the inputs that hold no image: reported, not dropped)."""
    import glob

    from facial_emotion.data.readers import IMAGE_SUFFIXES

    out: list[str] = []
    empty: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            # is_file(): regular files only (a FIFO in a folder is not opened)
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            out += found
            if not found:
                empty.append(item)
        elif any(ch in item for ch in "*?[") and not p.exists():
            matches = sorted(glob.glob(item, recursive=True))
            out += matches if matches else [item]  # an unmatched glob is reported as not found
        else:
            out.append(item)
    return out, empty


def cmd_analyze(args: argparse.Namespace) -> int:
    from facial_emotion.inference.pipeline import EmotionRecognizer, PhotoResult
    from facial_emotion.results import writers
    from facial_emotion.results.media import AnnotatedFolder

    if args.file_timeout < 0:
        raise UserError("--file-timeout must not be negative (0 = no limit)")
    recognizer = EmotionRecognizer(
        args.model, detector=args.detector, tta=args.tta, threads=args.threads, landmarks=args.landmarks
    )
    paths, empty = _expand_inputs(args.paths)
    if not paths:
        raise UserError("no input images found" + (f" ({', '.join(empty)}: no images)" if empty else ""))
    folder = AnnotatedFolder(Path(args.annotate)) if args.annotate else None
    results: list[PhotoResult] = []
    annotated: list[str | None] = []
    for name in empty:  # reported like any input that failed: the user named it
        results.append(PhotoResult(name, error=f"{name}: folder holds no images"))
        annotated.append(None)
        print(f"error: {results[-1].error}", file=sys.stderr)
    for result in recognizer.analyze_each(paths, timeout=args.file_timeout or None):
        drawn = None
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
        elif folder is not None and result.image is not None:
            drawn = str(folder.write(result.source, result.image, result.faces))
        result.image = None  # written: free the pixels before the next photo
        results.append(result)
        annotated.append(drawn)
    if args.csv:
        writers.write_photos_csv(results, Path(args.csv), recognizer.classes, pose=args.landmarks)
    if args.json:
        writers.print_json(writers.photos_json(results, annotated))
    else:
        sys.stdout.write(writers.photos_table(results))
    return EXIT_PARTIAL if any(r.error for r in results) else EXIT_OK


def cmd_correct(args: argparse.Namespace) -> int:
    from facial_emotion.feedback import FeedbackStore
    from facial_emotion.inference.decode import load_image
    from facial_emotion.inference.pipeline import EmotionRecognizer

    recognizer = EmotionRecognizer(args.model, detector=args.detector, threads=args.threads)
    store = FeedbackStore(args.feedback_dir, recognizer.classes)  # not writable: fails before any work
    image = load_image(args.photo)
    dets = recognizer.detect(image)
    if not 1 <= args.face <= len(dets):
        raise UserError(
            f"{args.photo}: no face #{args.face} (found {len(dets)}; numbered as `analyze` prints)"
        )
    face = recognizer.analyze_frame(image, [dets[args.face - 1]])[0]
    saved = store.save(
        image, dets[args.face - 1], args.emotion, recognizer.model_info, face.scores, str(args.photo)
    )
    print(
        f"face #{args.face}: model said {face.emotion} {face.confidence:.0%}, saved as {args.emotion}: {saved.face}"
    )
    return EXIT_OK


def _check_video_args(args: argparse.Namespace) -> None:
    if not 0 <= args.smoothing < 1:
        raise UserError("--smoothing must be in 0..1 (1 excluded: the scores would never change)")
    if args.threads is not None and args.threads < 0:
        raise UserError("--threads must not be negative")
    if args.detect_every < 1:
        raise UserError("--detect-every must be at least 1")
    for path in getattr(args, "summary", None) or []:
        if Path(path).suffix.lower() not in (".json", ".csv", ".png"):
            raise UserError(f"--summary {path}: write it as .json, .csv or .png")
        if Path(path).suffix.lower() == ".png":
            _need_matplotlib("--summary .png")


def _need_matplotlib(option: str) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:  # say so before a long video
        raise UserError(f"{option} needs matplotlib: pip install 'facial-emotion[plot]'")


def _write_summaries(args: argparse.Namespace, result, classes: list[str]) -> None:
    from facial_emotion.results.session import write_session

    for path in args.summary or []:
        write_session(Path(path), result.summary, classes, result.events)
        print(f"wrote {path}", file=sys.stderr)


def cmd_video(args: argparse.Namespace) -> int:
    from facial_emotion.inference.pipeline import EmotionRecognizer
    from facial_emotion.inference.video import analyze_video, shortfall
    from facial_emotion.results import writers
    from facial_emotion.results.media import AnnotatedVideo

    if args.every < 1:
        raise UserError("--every must be at least 1")
    _check_video_args(args)
    if args.plot:
        _need_matplotlib("--plot")
    recognizer = EmotionRecognizer(
        args.model, detector=args.detector, tta=args.tta, threads=args.threads, landmarks=args.landmarks
    )
    with contextlib.ExitStack() as outputs:
        video = outputs.enter_context(AnnotatedVideo(Path(args.out))) if args.out else None
        result = analyze_video(
            recognizer,
            args.file,
            every=args.every,
            smoothing=args.smoothing,
            detect_every=args.detect_every,
            progress=not args.json and sys.stderr.isatty(),
            on_open=video.set_fps if video else None,
            on_frame=(lambda _i, frame, faces, _fps: video.write(frame, faces)) if video else None,
        )
    if args.timeline:
        writers.write_timeline_csv(result, Path(args.timeline), recognizer.classes, pose=args.landmarks)
    if args.plot:
        from facial_emotion.results.plots import plot_timeline

        plot_timeline(result, Path(args.plot), recognizer.classes)
    _write_summaries(args, result, recognizer.classes)
    if args.json:
        writers.print_json(writers.video_json(result))
    else:
        sys.stdout.write(writers.video_table(result))
    damaged = shortfall(result)  # after the outputs: what was read is written either way
    if damaged and args.strict:
        raise UserError(damaged)
    if damaged:
        print(f"warning: {damaged}", file=sys.stderr)
    return EXIT_OK


def cmd_webcam(args: argparse.Namespace) -> int:
    import os

    import cv2

    from facial_emotion.inference.pipeline import EmotionRecognizer
    from facial_emotion.inference.video import VideoError, analyze_video
    from facial_emotion.results.draw import annotate
    from facial_emotion.results.session import session_lines

    source = args.source if args.source is not None else str(args.camera)
    headless = (
        not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and sys.platform.startswith("linux")
    )
    if headless and not args.no_window:
        raise UserError(
            "no display to show the camera window (set DISPLAY, or use --no-window / the 'video' command)"
        )
    _check_video_args(args)
    recognizer = EmotionRecognizer(
        args.model, detector=args.detector, threads=args.threads, landmarks=args.landmarks
    )

    def show(_index: int, frame, faces, fps: float) -> bool:
        if args.no_window:
            return True
        try:
            cv2.imshow("facial-emotion (q quits)", annotate(frame, faces, fps=fps))
        except cv2.error:
            raise UserError(
                "cannot open a window: this OpenCV build has no GUI (pip install opencv-python, or --no-window)"
            ) from None
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    try:
        result = analyze_video(
            recognizer,
            source,
            every=1,
            smoothing=args.smoothing,
            on_frame=show,
            max_frames=args.max_frames,
            detect_every=args.detect_every,
            keep_timeline=False,
        )
    except VideoError as e:
        raise UserError(f"{e} — is a camera connected? try --camera N") from None
    finally:
        if not args.no_window:
            with contextlib.suppress(cv2.error):
                cv2.destroyAllWindows()
    print(f"{result.frames_read} frames, {result.frames_read / max(result.seconds, 1e-9):.1f} fps")
    print("\n".join(session_lines(result.summary)))
    _write_summaries(args, result, recognizer.classes)
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from facial_emotion.batch.job import run_batch
    from facial_emotion.batch.work import AnalyzerOptions

    _check_video_args(args)
    if args.every < 1:
        raise UserError("--every must be at least 1")
    options = AnalyzerOptions(
        model=args.model,
        detector=args.detector,
        threads=args.threads if args.threads is not None else 1,
        every=args.every,
        smoothing=args.smoothing,
        detect_every=args.detect_every,
    )
    report = run_batch(
        args.inputs,
        Path(args.out),
        options,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
        fmt=args.format,
        chunk_frames=args.chunk_frames,
        overlap=args.overlap,
        max_frames=args.max_frames,
        commit_every=args.commit_every,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    for error in report.errors:
        print(f"error: {error['error']}", file=sys.stderr)
    print(
        f"{report.out}: {report.done} units analysed ({report.skipped} already done), {report.frames} frames,"
        f" {report.faces} face rows, {len(report.errors)} errors, {report.fps:.1f} frames/s"
    )
    return EXIT_PARTIAL if report.errors else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    with needs_extra("serve", "serve"):
        import uvicorn

        from facial_emotion.service.app import create_app
        from facial_emotion.service.protocol import http_protocol
    if (
        args.max_upload_mb <= 0
        or args.timeout <= 0
        or (args.workers is not None and args.workers < 1)
        or (args.max_megapixels is not None and args.max_megapixels <= 0)
    ):
        raise UserError("--max-upload-mb, --max-megapixels, --timeout and --workers must be positive")
    app = create_app(
        model=args.model,
        detector=args.detector,
        cors_origins=args.cors_origin or [],
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1e6) if args.max_megapixels else None,
        request_timeout=args.timeout,
        workers=args.workers,
        webhook=args.webhook,
        feedback_dir=args.feedback_dir,
        admin_token=args.admin_token,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", http=http_protocol())
    return EXIT_OK


# --- parser -------------------------------------------------------------------------------------------


def _common_inference(p: argparse.ArgumentParser, tta: bool = True, landmarks: bool = True) -> None:
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--detector",
        default=None,
        help="blazeface (default), blazeface:short|tiles|whole, haar[:N] or yunet[:MODEL.onnx]",
    )
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    if landmarks:
        p.add_argument(
            "--landmarks",
            action="store_true",
            help="also the 468-point face mesh and head yaw/pitch/roll (JSON; pose columns in CSV); drawn "
            "on annotated output (about 3 ms more per face)",
        )
    if tta:
        p.add_argument(
            "--tta", action="store_true", help="ten-crop test-time augmentation (slower, a bit more accurate)"
        )


def _summary_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--summary",
        action="append",
        metavar="FILE",
        help="write the per-person session summary: .json (with the events), .csv or .png (a chart; "
        "needs matplotlib); repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facial-emotion",
        description="Recognise the seven basic facial emotions in photos, videos and cameras, offline on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "train",
        help="train a model on FER-2013 / FER+ / your folders and export it to ONNX",
        description="Options left out take the built-in model's recipe (see scripts/train_builtin.sh).",
    )
    p.add_argument(
        "--data", required=True, help="fer2013.csv(.gz), a Kaggle-layout folder, or ROOT/<emotion>/ images"
    )
    p.add_argument(
        "--labels",
        choices=["fer2013", "ferplus", "ferplus8"],
        help="fer2013 (default); ferplus: FER+ vote distributions; ferplus8: the same with contempt (8 classes)",
    )
    p.add_argument("--ferplus-mix", type=float, help="blend FER+ vote distributions into the targets (0..1)")
    p.add_argument(
        "--logit-adjust",
        type=float,
        metavar="TAU",
        help="class-balanced loss: add TAU * log(class prior) to the logits in the loss (1 = full; 0 = off)",
    )
    p.add_argument("--teacher", help="distil from these models: comma list of .onnx files (with --distill)")
    p.add_argument(
        "--distill", type=float, help="weight of the teachers' ten-crop probabilities in the targets (0..1)"
    )
    p.add_argument("--distill-temperature", type=float, help="soften the teachers' probabilities (default 1)")
    p.add_argument("--arch", help="architecture: vgg-s, vgg-m, vgg-l, resnet-s, resnet-m, resnet18")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument(
        "--lr", type=float, help="peak learning rate of the one-cycle schedule (swa: the constant rate)"
    )
    p.add_argument("--momentum", type=float, help="SGD momentum (one-cycle: its peak)")
    p.add_argument(
        "--schedule",
        choices=["onecycle", "swa"],
        help="onecycle (default), or swa: constant lr, weights averaged every epoch (after --init-from)",
    )
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--mixup", type=float, help="mixup Beta(a, a); 0 = off")
    p.add_argument("--ema", dest="ema_decay", type=float, help="EMA decay of the weights; 0 = off")
    p.add_argument("--train-split", help="comma list of splits to train on (default Training / train)")
    p.add_argument(
        "--val-split", help="split to validate on (default PublicTest / test / 10%% hold-out; 'none')"
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
        help="start from these weights: a run's best.pt / last.pt, or a model .onnx file (the built-in "
        "one, say): a second stage or fine-tuning",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--limit", type=int, help="train on the first N faces only (smoke tests)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed csv rows instead of failing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
        "--from-zip", metavar="ARCHIVE", help="import this .zip / .tar.gz / folder (csv or folder layout)"
    )
    p.add_argument("--kaggle-dataset", default="msambare/fer2013", help="Kaggle dataset to download")
    p.add_argument("--allow-partial", action="store_true", help="import an incomplete archive anyway")
    p.add_argument("--force", action="store_true", help="replace a non-empty --to folder")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "evaluate", help="accuracy, per-class report and confusion matrix of a model on a dataset"
    )
    p.add_argument("--data", required=True)
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--split", help="csv Usage or sub-folder (default: PrivateTest, else PublicTest, else test)"
    )
    p.add_argument("--tta", action="store_true", help="ten-crop test-time augmentation")
    p.add_argument(
        "--labels",
        choices=["fer2013", "ferplus"],
        default="fer2013",
        help="ferplus: score against each face's FER+ majority vote (fer2013new.csv beside the csv; "
        "an 8-class model on all eight classes)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--report", metavar="DIR", help="write confusion matrices, report.md/json and a mistakes grid"
    )
    p.add_argument("--skip-bad", action="store_true", help="skip malformed csv rows instead of failing")
    p.add_argument("--threads", type=int, default=None)
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
    p.add_argument("--mix", type=int, default=3000, help="FER-2013 training faces mixed in (default 3000)")
    p.add_argument("--epochs", type=int, default=3, help="default 3")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default 0.01)")
    p.add_argument("--eval-limit", type=int, default=0, metavar="N", help="first N PublicTest faces only")
    p.add_argument("--threads", type=int, default=0, help="torch/onnxruntime threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "calibrate",
        help="fit a model's confidence calibration on a labelled split and store it",
        description="Vector scaling (a scale and a bias per class) or one temperature, fitted by NLL on "
        "--split (PublicTest by default; never PrivateTest), for plain and ten-crop inference. "
        "Confidences match accuracy better; a temperature never changes a label, vector scaling "
        "can where two classes are nearly tied. Also sets the confidence under which a face is "
        "flagged uncertain.",
    )
    p.add_argument("model", help="model file (or a built-in model's name) to calibrate")
    p.add_argument("--data", required=True, help="fer2013.csv(.gz) or a Kaggle-layout folder")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--out", help="write the calibrated model here (default: rewrite MODEL in place)")
    p.add_argument(
        "--method",
        choices=("vector", "temperature"),
        default="vector",
        help="vector scaling (default; needs 20 faces of each class) or one temperature",
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
    p.add_argument("--faces", type=int, default=2048, help="calibration faces (whole batches of 64)")
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
    p.add_argument("--out", required=True, help="ENSEMBLE.onnx (metadata is also written to ENSEMBLE.json)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("analyze", help="find every face in photos and tell its emotion")
    p.add_argument("paths", nargs="+", help="image files, folders or globs")
    _common_inference(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--csv", metavar="FILE", help="also write a CSV, one row per face")
    p.add_argument("--annotate", metavar="DIR", help="write annotated copies into DIR")
    p.add_argument(
        "--file-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to read and decode one file before it is reported as an error and the batch "
        "goes on (default 60; 0 = no limit)",
    )
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "correct", help="save a face the model got wrong, with the right emotion, to fine-tune on"
    )
    p.add_argument("photo")
    p.add_argument(
        "--face", type=int, default=1, help="which face, numbered as `analyze` prints them (default 1)"
    )
    p.add_argument("--emotion", required=True, help="the right emotion (one of the model's classes)")
    p.add_argument(
        "--feedback-dir", default="feedback", metavar="DIR", help="where corrections go (default ./feedback)"
    )
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--detector", default=None, help="as for analyze")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.set_defaults(func=cmd_correct)

    p = sub.add_parser("video", help="analyse a video: tracked faces, timeline, summary, annotated copy")
    p.add_argument("file")
    _common_inference(p)
    p.add_argument("--every", type=int, default=1, help="analyse every N-th frame")
    p.add_argument(
        "--smoothing", type=float, default=0.6, help="temporal smoothing of scores per face (0 = off, <1)"
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=DEFAULT_DETECT_EVERY,
        help="full-frame face search every N analysed frames (default 1 = always; N > 1 follows faces "
        "in between: faster, may miss new faces for N frames)",
    )
    p.add_argument("--out", help="annotated video (.mp4 / .avi)")
    p.add_argument("--timeline", help="CSV, one row per analysed frame and face")
    p.add_argument("--plot", help="PNG of each face's emotions over time")
    p.add_argument("--json", action="store_true", help="print one JSON document (summary and timeline)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a video that gives over 2%% fewer frames than it announces (damaged, truncated) is an "
        "error (exit 2) instead of a warning; the outputs are still written",
    )
    _summary_option(p)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("webcam", help="live camera with boxes, labels and fps; q quits")
    p.add_argument("--camera", type=int, default=0, help="camera index")
    p.add_argument("--source", help="any OpenCV capture source instead of a camera (file, URL)")
    _common_inference(p, tta=False)
    p.add_argument("--smoothing", type=float, default=0.6)
    p.add_argument(
        "--detect-every",
        type=int,
        default=DEFAULT_DETECT_EVERY,
        help="full-frame face search every N frames (default 1; more is faster)",
    )
    p.add_argument("--no-window", action="store_true", help="do not show a window (measure only)")
    p.add_argument("--max-frames", type=int, default=None)
    _summary_option(p)
    p.set_defaults(func=cmd_webcam)

    p = sub.add_parser(
        "batch",
        help="photos and videos by the thousand -> Parquet/CSV tables (local processes or Ray)",
        description="One row per face per analysed frame in OUT/faces, a summary per source in "
        "OUT/sources, failures in OUT/errors. A re-run skips what OUT already holds.",
    )
    p.add_argument(
        "inputs", nargs="+", help="files, folders, globs, or manifests (.txt / .csv of paths or URIs)"
    )
    p.add_argument("--out", required=True, help="output folder")
    _common_inference(p, tta=False, landmarks=False)  # batch has no mesh columns
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local process pool or Ray Data"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes / Ray actors (one recognizer each)"
    )
    p.add_argument(
        "--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start Ray here)"
    )
    p.add_argument("--format", choices=["parquet", "csv"], help="default parquet (csv without pyarrow)")
    p.add_argument("--every", type=int, default=1, help="analyse every N-th video frame")
    p.add_argument("--smoothing", type=float, default=0.6, help="temporal smoothing of scores per face")
    p.add_argument(
        "--detect-every", type=int, default=DEFAULT_DETECT_EVERY, help="full face search every N frames"
    )
    p.add_argument("--max-frames", type=int, help="first N frames of each video only")
    p.add_argument(
        "--chunk-frames", type=int, default=0, help="split videos into ranges of N frames (0: whole files)"
    )
    p.add_argument("--overlap", type=int, default=30, help="warm-up frames replayed before each range")
    p.add_argument(
        "--commit-every", type=int, default=64, help="units of work per commit (resume granularity)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("serve", help="web service and browser page (needs the [serve] extra)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--detector", default=None)
    p.add_argument(
        "--cors-origin", action="append", help="allow this browser origin (repeatable); default none"
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (413 above)")
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=None,
        help="largest accepted image (413 above; default $FACIAL_EMOTION_MAX_PIXELS, 64 MP); large "
        "images are decoded at 2048 px on the long side, so memory stays bounded",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request before a 504")
    p.add_argument(
        "--workers", type=int, default=None, help="images analysed at once (default: cores, max 4)"
    )
    p.add_argument(
        "--webhook",
        metavar="URL",
        help="also POST every live-stream event (emotion changes and holds) as JSON to this URL",
    )
    p.add_argument(
        "--feedback-dir",
        metavar="DIR",
        help="turn on corrections: the page's 'wrong?' and POST /v1/feedback save faces here (default off)",
    )
    p.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="allow POST /v1/model/reload from anywhere with 'Authorization: Bearer TOKEN' "
        "(default: from this machine only)",
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "train" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except _user_errors() as e:
        print(f"facial-emotion {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as e:  # an optional dependency (plots, progress bars) is missing
        print(
            f"facial-emotion {args.command}: error: this needs the package {e.name!r}: pip install {e.name}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except BrokenPipeError:  # `... | head -1` closed our stdout: what it wanted was written
        _silence_stdout()
        return EXIT_OK
    except OSError as e:  # cannot read or write a file the user named (permissions, full disk...)
        where = f" {e.filename}" if e.filename else ""
        print(f"facial-emotion {args.command}: error:{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of a closed pipe does not
    raise a second BrokenPipeError (Python's documented recipe, see the signal module's notes)."""
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
