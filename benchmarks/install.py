"""How big the base install is and how long the package takes to import.

    python benchmarks/install.py [--keep DIR]

Creates a fresh virtual environment, runs `pip install .` (the base install: inference only, no
extras), and reports the size of its site-packages, the largest packages in it, and the wall time of
`import facial_emotion`, `from facial_emotion import EmotionRecognizer` and `EmotionRecognizer()`
(median of 5 fresh interpreters each). Writes benchmarks/results/install.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_machine import describe_machine, write_results

REPO = Path(__file__).resolve().parents[1]
IMPORTS = {
    "import facial_emotion": "import facial_emotion",
    "from facial_emotion import EmotionRecognizer": "from facial_emotion import EmotionRecognizer",
    "EmotionRecognizer() (model and detector loaded)": "from facial_emotion import EmotionRecognizer; EmotionRecognizer()",
    "facial-emotion --help": "from facial_emotion.cli import build_parser; build_parser().format_help()",
}


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="build the venv here and keep it (default: a temp folder, removed)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "install.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(args.keep or Path(tmp) / "venv")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        t0 = time.perf_counter()
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)], check=True
        )
        install_s = time.perf_counter() - t0
        site = next((venv / "lib").glob("python*/site-packages"))
        tooling = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")
        packages = {
            p.name: round(folder_mb(p) if p.is_dir() else p.stat().st_size / 1e6, 1)
            for p in site.iterdir()
            if not p.name.startswith(tooling) and not p.name.endswith(".dist-info")
        }
        imports = {}
        for label, code in IMPORTS.items():
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                subprocess.run([str(python), "-c", code], check=True, cwd=tmp)
                times.append(time.perf_counter() - t0)
            imports[label] = round(statistics.median(times), 3)
    total = round(sum(packages.values()), 1)
    largest = dict(sorted(packages.items(), key=lambda kv: -kv[1])[:8])
    results = {
        "machine": describe_machine(),
        "site_packages_mb": total,
        "largest_mb": largest,
        "pip_install_seconds": round(install_s, 1),
        "import_seconds": imports,
    }
    print(
        f"base install: {total} MB in site-packages (pip and setuptools excluded), pip install {install_s:.0f} s"
    )
    for name, mb in largest.items():
        print(f"  {name:<32}{mb:>8.1f} MB")
    for label, s in imports.items():
        print(f"{label:<50}{s:>7.3f} s")
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
