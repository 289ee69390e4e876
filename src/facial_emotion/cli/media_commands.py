"""The commands that look at faces: analyze, correct, video, webcam, batch, serve. Each imports what
it needs when it runs: ``--help`` loads neither OpenCV nor onnxruntime."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

from facial_emotion.cli.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    MODEL_HELP,
    UserError,
    at_least,
    finite_float,
    needs_extra,
    output_file,
    output_folder,
)
from facial_emotion.settings import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTHING


def _expand_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """(image paths, folders among the inputs that hold no image: reported, not dropped)."""
    import glob

    from facial_emotion.inference.decode import IMAGE_SUFFIXES, media_files

    out: list[str] = []
    empty: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = media_files(p, IMAGE_SUFFIXES)
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
    paths, empty = _expand_inputs(args.paths)
    csv_path = output_file(args.csv, "--csv", paths) if args.csv else None
    annotate_dir = output_folder(args.annotate, "--annotate") if args.annotate else None
    recognizer = EmotionRecognizer(
        args.model, detector=args.detector, tta=args.tta, threads=args.threads, landmarks=args.landmarks
    )
    if not paths:
        raise UserError("no input images found" + (f" ({', '.join(empty)}: no images)" if empty else ""))
    folder = AnnotatedFolder(annotate_dir) if annotate_dir is not None else None
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
    if csv_path:
        writers.write_photos_csv(results, csv_path, recognizer.classes, pose=args.landmarks)
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
    emotion = store.check_emotion(args.emotion)  # before the photo is read and its faces found
    image = load_image(args.photo)
    dets = recognizer.detect(image)
    if not dets:
        raise UserError(f"{args.photo}: no face found in this photo")
    if args.box is not None:  # as the service's box=: the face found that overlaps it most
        from facial_emotion.feedback import face_at_box

        args.face = face_at_box([d.box for d in dets], args.box)
    if not 1 <= args.face <= len(dets):
        raise UserError(
            f"{args.photo}: no face #{args.face} (found {len(dets)}; numbered as `analyze` prints)"
        )
    det = dets[args.face - 1]
    face = recognizer.analyze_frame(image, [det])[0]
    # the photo's absolute path: a path relative to wherever the command ran says nothing later
    saved = store.save(
        image, det, emotion, recognizer.model_record, face.scores, str(Path(args.photo).resolve())
    )
    print(
        f"face #{args.face}: model said {face.emotion} {face.confidence:.0%}, saved as {emotion}: {saved.face}"
    )
    return EXIT_OK


def _box(text: str) -> tuple[int, int, int, int]:
    """``x,y,w,h`` in whole pixels, width and height positive."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give x,y,w,h in whole pixels") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be positive")
    return x, y, w, h


def _media_inputs(args: argparse.Namespace) -> list[str]:
    """The video file (or webcam --source file) an output must not replace."""
    return [v for v in (getattr(args, "file", None), getattr(args, "source", None)) if isinstance(v, str)]


def _check_video_args(args: argparse.Namespace) -> None:
    if not 0 <= args.smoothing < 1:
        raise UserError("--smoothing must be in 0..1 (1 excluded: the scores would never change)")
    named = [(f"--{o}", getattr(args, o, None)) for o in ("out", "timeline", "plot")]
    named += [("--summary", p) for p in getattr(args, "summary", None) or []]
    taken: dict[str, str] = {}
    for option, path in named:
        if not path:
            continue
        # two outputs in one file: the one written last replaced the other, without a word
        where = os.path.realpath(path)
        if where in taken:
            raise UserError(f"{option} {path} and {taken[where]} name the same file: give each its own")
        taken[where] = f"{option} {path}"
    for path in getattr(args, "summary", None) or []:
        output_file(path, "--summary", _media_inputs(args))
        if Path(path).suffix.lower() not in (".json", ".csv", ".png"):
            raise UserError(f"--summary {path}: write it as .json, .csv or .png")
        if Path(path).suffix.lower() == ".png":
            _need_matplotlib("--summary .png")


def _need_matplotlib(option: str) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:  # say so before a long video
        from facial_emotion.extras import install_hint

        raise UserError(f"{option} needs matplotlib: {install_hint('plot')}")


def _write_summaries(args: argparse.Namespace, result, classes: list[str]) -> None:
    from facial_emotion.results.session import write_session

    for path in args.summary or []:
        write_session(Path(path), result.summary, classes, result.events)
        print(f"wrote {path}", file=sys.stderr)


def cmd_video(args: argparse.Namespace) -> int:
    from facial_emotion.inference.pipeline import EmotionRecognizer
    from facial_emotion.inference.video import analyze_video, is_live, shortfall
    from facial_emotion.results import writers
    from facial_emotion.results.media import ANNOTATED_VIDEO_SUFFIXES, AnnotatedVideo, with_sound

    _check_video_args(args)
    for option in ("out", "timeline", "plot"):  # files (batch's --out is a folder: not checked there)
        if getattr(args, option):
            output_file(getattr(args, option), f"--{option}", _media_inputs(args))
    if args.out and Path(args.out).suffix.lower() not in ANNOTATED_VIDEO_SUFFIXES:
        raise UserError(f"--out {args.out}: name the annotated video {', '.join(ANNOTATED_VIDEO_SUFFIXES)}")
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise UserError(f"--plot {args.plot}: the plot is a PNG; name it .png")
    if args.plot:
        _need_matplotlib("--plot")
    recognizer = EmotionRecognizer(
        args.model, detector=args.detector, tta=args.tta, threads=args.threads, landmarks=args.landmarks
    )
    if args.out and not with_sound():
        from facial_emotion.extras import install_hint

        print(
            "note: without PyAV the annotated copy is MPEG-4 Part 2 (or Motion JPEG) with no sound, which"
            f" browsers and phones do not play; for H.264 with the original's sound: {install_hint('video')}",
            file=sys.stderr,
        )
    # the sound comes from a file on disk (a URL would be downloaded twice, a camera has none)
    sound_from = str(args.file) if Path(str(args.file)).is_file() else None
    with contextlib.ExitStack() as outputs:
        video = (
            outputs.enter_context(
                AnnotatedVideo(Path(args.out), sound_from=sound_from, live=is_live(args.file))
            )
            if args.out
            else None
        )
        result = analyze_video(
            recognizer,
            args.file,
            every=args.every,
            smoothing=args.smoothing,
            detect_every=args.detect_every,
            progress=not args.json and sys.stderr.isatty(),
            on_open=video.set_fps if video else None,
            on_timed_frame=(lambda i, t, frame, faces, _fps: video.write(frame, faces, i, t))
            if video
            else None,
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
    import cv2

    from facial_emotion.inference.pipeline import EmotionRecognizer
    from facial_emotion.inference.video import VideoError, analyze_video
    from facial_emotion.results.draw import annotate
    from facial_emotion.results.session import session_lines

    if args.source is not None and args.camera is not None:
        raise UserError("--camera N or --source SOURCE, not both")
    source = args.source if args.source is not None else str(args.camera or 0)
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
            interrupt_stops=True,  # Ctrl-C quits as q does, summary kept (--no-window has no q)
        )
    except VideoError as e:
        if args.source is not None and not args.source.isdigit():  # a file or URL: its error says it all
            raise UserError(str(e)) from None
        raise UserError(f"{e} — is a camera connected? try --camera N") from None
    finally:
        if not args.no_window:
            with contextlib.suppress(cv2.error):
                cv2.destroyAllWindows()
    if args.json:
        from facial_emotion.results import writers

        writers.print_json(writers.video_json(result))
    else:
        print(f"{result.frames_read} frames, {result.frames_read / max(result.seconds, 1e-9):.1f} fps")
        print("\n".join(session_lines(result.summary)))
    _write_summaries(args, result, recognizer.classes)
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from facial_emotion.batch.job import run_batch
    from facial_emotion.batch.work import AnalyzerOptions

    _check_video_args(args)
    if args.address and args.engine != "ray":
        raise UserError("--address is a Ray cluster's: it needs --engine ray")
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
    for folder in report.empty:  # reported like a source that failed: the user named it
        print(f"error: {folder}: folder holds no photos or videos", file=sys.stderr)
    for row in report.unread:
        print(f"error: {row}", file=sys.stderr)
    for error in report.errors:
        print(f"error: {error['error']}", file=sys.stderr)
    for warning in report.warnings:  # analysed and committed: the sources table's `warning` says it too
        print(f"warning: {warning}", file=sys.stderr)
    failed = len(report.errors) + len(report.empty) + len(report.unread)
    print(
        f"{report.out}: {report.done} units analysed ({report.skipped} already done), {report.frames} frames,"
        f" {report.faces} face rows, {failed} errors, {report.fps:.1f} frames/s"
    )
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    with needs_extra("serve", "serve"):
        import uvicorn

        from facial_emotion.service.app import create_app
        from facial_emotion.service.protocol import http_protocol
    if (
        args.max_upload_mb <= 0
        or args.timeout <= 0
        or (args.max_megapixels is not None and args.max_megapixels <= 0)
    ):
        raise UserError("--max-upload-mb, --max-megapixels and --timeout must be positive")
    if args.admin_token is not None and not args.admin_token.strip():
        # an unset "$TOKEN" in a script: an empty token would let anyone send "Bearer " and reload
        raise UserError("--admin-token is empty (an unset variable?): give a real token or leave it out")
    check_listen_address(args.host, args.port)
    too_small = args.max_upload_mb * 1024 * 1024 < 1 or (args.max_megapixels or 1) * 1e6 < 1
    if too_small:  # positive, yet under one byte or one pixel: nothing could ever be accepted
        raise UserError("--max-upload-mb and --max-megapixels must allow at least one byte / pixel")
    app = create_app(
        model=args.model,
        detector=args.detector,
        cors_origins=args.cors_origin or [],
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1e6) if args.max_megapixels else None,
        **({"max_side": args.max_side} if args.max_side else {}),
        request_timeout=args.timeout,
        workers=args.workers,
        webhook=args.webhook,
        feedback_dir=args.feedback_dir,
        admin_token=args.admin_token,
    )
    # what the service logs (a client that hung up mid-upload, the model swapped) beside uvicorn's lines
    logging.getLogger("facial_emotion.service").setLevel(logging.INFO)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="info",
            http=http_protocol(),
            ws_max_size=app.state.settings.ws_max_size,
        )
    except SystemExit as e:  # uvicorn exits with its own codes when start-up fails (logged above)
        if e.code:
            raise UserError(
                f"the server on {args.host}:{args.port} did not start (see the log above)"
            ) from None
    return EXIT_OK


def check_listen_address(host: str, port: int) -> None:
    """One clear error before the model loads if the server could not listen there: a port out of
    range (uvicorn would print one port and listen on another), a host that is not this machine's, or
    an address in use. A race with another process remains; uvicorn then fails and says so."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: must be 1..65535, or 0 for any free port (the log names it)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"--host {host}: {getattr(e, 'strerror', None) or e}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _common_inference(
    p: argparse.ArgumentParser,
    tta: bool = True,
    landmarks: bool = True,
    threads_help: str = "onnxruntime threads (default: all cores)",
) -> None:
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--detector",
        default=None,
        help="blazeface (default), blazeface:short|full|tiles|whole, haar[:N] or yunet[:MODEL.onnx]",
    )
    p.add_argument("--threads", type=at_least(0), default=None, help=threads_help)
    if landmarks:
        p.add_argument(
            "--landmarks",
            action="store_true",
            help="also the 468-point face mesh and head yaw/pitch/roll (JSON; pose columns in CSV); drawn "
            "on annotated output (about 2.5 ms more per face)",
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="find every face in photos and tell its emotion")
    p.add_argument("paths", nargs="+", help="image files, folders or globs")
    _common_inference(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--csv", metavar="FILE", help="also write a CSV, one row per face")
    p.add_argument("--annotate", metavar="DIR", help="write annotated copies into DIR")
    p.add_argument(
        "--file-timeout",
        type=finite_float,
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
        "--face",
        type=at_least(1),
        default=1,
        help="which face, numbered as `analyze` prints them (default 1)",
    )
    p.add_argument(
        "--box",
        type=_box,
        metavar="X,Y,W,H",
        help="which face, by a box in the photo's pixels (as a JSON reply gives it): the face found that "
        "overlaps it most; decides over --face",
    )
    p.add_argument("--emotion", required=True, help="the right emotion (one of the model's classes)")
    p.add_argument(
        "--feedback-dir", default="feedback", metavar="DIR", help="where corrections go (default ./feedback)"
    )
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--detector", default=None, help="as for analyze")
    p.add_argument(
        "--threads", type=at_least(0), default=None, help="onnxruntime threads (default: all cores)"
    )
    p.set_defaults(func=cmd_correct)

    p = sub.add_parser("video", help="analyse a video: tracked faces, timeline, summary, annotated copy")
    p.add_argument("file")
    _common_inference(p)
    p.add_argument(
        "--every",
        type=at_least(1),
        default=1,
        help="analyse one frame in each N frame intervals at the file's frame rate (every N-th frame of a "
        "constant-rate file)",
    )
    p.add_argument(
        "--smoothing",
        type=finite_float,
        default=DEFAULT_SMOOTHING,
        help="temporal smoothing of scores per face (0 = off, <1)",
    )
    p.add_argument(
        "--detect-every",
        type=at_least(1),
        default=DEFAULT_DETECT_EVERY,
        help="full-frame face search every N analysed frames (default 1 = always; N > 1 follows faces "
        "in between: faster, may miss new faces for N frames)",
    )
    p.add_argument(
        "--out",
        help="annotated video (.mp4 .m4v .mov .mkv: H.264 with the sound where PyAV is installed; .avi)",
    )
    p.add_argument("--timeline", help="CSV, one row per analysed frame and face")
    p.add_argument("--plot", help="PNG of each face's emotions over time")
    p.add_argument("--json", action="store_true", help="print one JSON document (summary and timeline)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a video that gives over 2%% fewer frames than it announces (damaged, truncated), unless "
        "they span its duration with no damaged stretch and no gap over 1 s, is an error (exit 2) "
        "instead of a warning; the outputs are still written",
    )
    _summary_option(p)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("webcam", help="live camera with boxes, labels and fps; q quits")
    p.add_argument("--camera", type=at_least(0), help="camera index (default 0)")
    p.add_argument("--source", help="any OpenCV capture source instead of a camera (file, URL)")
    _common_inference(p, tta=False)
    p.add_argument("--smoothing", type=finite_float, default=DEFAULT_SMOOTHING)
    p.add_argument(
        "--detect-every",
        type=at_least(1),
        default=DEFAULT_DETECT_EVERY,
        help="full-frame face search every N frames (default 1; more is faster)",
    )
    p.add_argument("--no-window", action="store_true", help="do not show a window (measure only)")
    p.add_argument("--max-frames", type=at_least(1), default=None)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document at the end, as video --json does (its timeline empty: a camera "
        "runs for hours; the summary and the events)",
    )
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
    _common_inference(  # batch has no mesh columns
        p, tta=False, landmarks=False, threads_help="onnxruntime threads per worker (default 1)"
    )
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local process pool or Ray Data"
    )
    p.add_argument(
        "--workers", type=at_least(1), default=1, help="worker processes / Ray actors (one recognizer each)"
    )
    p.add_argument(
        "--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start Ray here)"
    )
    p.add_argument("--format", choices=["parquet", "csv"], help="default parquet (csv without pyarrow)")
    p.add_argument(
        "--every",
        type=at_least(1),
        default=1,
        help="analyse one video frame in each N frame intervals at its frame rate (every N-th frame of a "
        "constant-rate video)",
    )
    p.add_argument(
        "--smoothing",
        type=finite_float,
        default=DEFAULT_SMOOTHING,
        help="temporal smoothing of scores per face",
    )
    p.add_argument(
        "--detect-every",
        type=at_least(1),
        default=DEFAULT_DETECT_EVERY,
        help="full face search every N frames",
    )
    p.add_argument(
        "--max-frames",
        type=at_least(1),
        help="first N frames of each video only (N frame intervals at its frame rate: a variable-rate video is cut by time)",
    )
    p.add_argument(
        "--chunk-frames",
        type=at_least(0),
        default=0,
        help="split videos into ranges of N frame intervals at their frame rate, cut by time (0: whole files)",
    )
    p.add_argument(
        "--overlap",
        type=at_least(0),
        default=30,
        help="warm-up frame intervals replayed before each range (with --chunk-frames)",
    )
    p.add_argument(
        "--commit-every", type=at_least(1), default=64, help="units of work per commit (resume granularity)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("serve", help="web service and browser page (needs the [serve] extra)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000, help="default 8000; 0: any free port, named in the log")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--detector", default=None)
    p.add_argument(
        "--cors-origin", action="append", help="allow this browser origin (repeatable); default none"
    )
    p.add_argument(
        "--max-upload-mb", type=finite_float, default=10.0, help="largest accepted upload (413 above)"
    )
    p.add_argument(
        "--max-megapixels",
        type=finite_float,
        default=None,
        help="largest accepted image (413 above; default $FACIAL_EMOTION_MAX_PIXELS, 64 MP); large "
        "images are decoded at --max-side px on the long side, so memory stays bounded",
    )
    p.add_argument(
        "--max-side",
        type=at_least(256),
        default=None,
        help="long side photos are analysed at (default 2048): faces under about 45 px there can be "
        "missed; raise it for group photos (memory per request grows with its square)",
    )
    p.add_argument("--timeout", type=finite_float, default=30.0, help="seconds per request before a 504")
    p.add_argument(
        "--workers", type=at_least(1), default=None, help="images analysed at once (default: cores, max 4)"
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
