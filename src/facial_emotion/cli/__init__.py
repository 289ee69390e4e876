"""The ``facial-emotion`` command. One thin function per subcommand (``model_commands``: train,
evaluate and the rest that make and judge models; ``media_commands``: analyze, video, webcam, batch,
serve): parse -> call the pipeline -> write through ``results``. Heavy imports happen inside them, so
``analyze`` never loads torch and ``--help`` loads neither OpenCV nor onnxruntime.

Exit codes (``errors``): 0 success, 1 some inputs failed (others were still processed), 2 usage or data
error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading

from facial_emotion import __version__
from facial_emotion.cli import media_commands, model_commands
from facial_emotion.cli.errors import EXIT_OK, EXIT_USAGE, user_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facial-emotion",
        description="Recognise the seven basic facial emotions in photos, videos and cameras, offline on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    media_commands.add_parsers(sub)  # first in --help: what most users come for
    model_commands.add_parsers(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM (a scheduler's time limit, `docker stop`, `timeout`), raised like Ctrl-C's
    KeyboardInterrupt so that what is being written is removed: it killed the process with its
    half-written temp files left beside the outputs."""


_signalled = threading.Event()


def _ignore_more_signals() -> None:
    """One SIGTERM or Ctrl-C is enough: `timeout` sends its signal to the process and then to its
    group, so a second one arrived while the first's cleanup ran (removing temp files) or after it,
    and ended in a traceback or an abort instead of "terminated"."""
    _signalled.set()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate(_signum: int, _frame: object) -> None:
    _ignore_more_signals()
    raise Terminated


def _interrupt(_signum: int, _frame: object) -> None:
    _ignore_more_signals()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "train" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return _run(args)
    # `serve` puts uvicorn's own in their place
    before = signal.signal(signal.SIGTERM, _terminate), signal.signal(signal.SIGINT, _interrupt)
    try:
        code = _run(args)
    finally:
        if not _signalled.is_set():  # after a signal the process is on its way out: no more of them
            signal.signal(signal.SIGTERM, before[0])
            signal.signal(signal.SIGINT, before[1])
    if _signalled.is_set():
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Exit at once, the cleanup done: a worker thread (a photo's reader, the annotated copy's
    writer) may still be inside OpenCV, and the interpreter's shutdown ends such a thread by an
    unwind that OpenCV's C++ swallows: glibc aborts ("FATAL: exception not rethrown", exit 134)."""
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except user_errors() as e:
        print(f"facial-emotion {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as e:  # an optional dependency (plots, progress bars) is missing
        print(
            f"facial-emotion {args.command}: error: this needs the package {e.name!r}: pip install {e.name} "
            "(or the extra that brings it: see the README's install lines)",
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
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of a closed pipe does not
    raise a second BrokenPipeError (Python's documented recipe, see the signal module's notes)."""
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
