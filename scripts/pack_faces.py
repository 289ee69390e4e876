"""Pack a dataset's faces small enough to travel to a GPU machine, and unpack them there.

The device tool carries at most 64 MiB of working tree, the project included: FER-2013's Training
and PublicTest faces are 71 MiB of uint8 (xz alone: 53 MiB). Each pixel is replaced by its
difference from the LOCO-I / JPEG-LS median predictor of its left, upper and upper-left neighbours
before xz, which packs them in 48 MiB (0.68 of raw, measured); lossless, checked on unpacking.

    python scripts/pack_faces.py pack --data ../shared/datasets/fer2013/fer2013.csv.gz \\
        --splits Training,PublicTest --out gpu/faces.xz
    python scripts/pack_faces.py unpack gpu/faces.xz --out /tmp/faces.npz   # then: train --data /tmp/faces.npz
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runs from a checkout, uninstalled

from facial_emotion.data.cache import write_npz  # noqa: E402
from facial_emotion.data.readers import load_dataset  # noqa: E402

XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _neighbours(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    left, up, up_left = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    left[..., 1:] = x[..., :-1]
    up[..., 1:, :] = x[..., :-1, :]
    up_left[..., 1:, 1:] = x[..., :-1, :-1]
    return left, up, up_left


def median_prediction(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector; int16 in, int16 out."""
    hi, lo = np.maximum(left, up), np.minimum(left, up)
    return np.where(up_left >= hi, lo, np.where(up_left <= lo, hi, left + up - up_left))


def residuals(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> uint8 residuals mod 256. The first row predicts from the left, the first
    column from above, the corner from 0."""
    x = images.astype(np.int16)
    left, up, up_left = _neighbours(x)
    pred = median_prediction(left, up, up_left)
    pred[:, 0, :] = left[:, 0, :]
    pred[:, :, 0] = up[:, :, 0]
    return ((x - pred) % 256).astype(np.uint8)


def restore(res: np.ndarray) -> np.ndarray:
    """The inverse of ``residuals``: pixel by pixel in raster order, vectorised over the faces."""
    n, h, w = res.shape
    x = np.zeros((n, h, w), dtype=np.int16)
    r = res.astype(np.int16)
    for i in range(h):
        for j in range(w):
            if i == 0:
                pred = x[:, 0, j - 1] if j else np.zeros(n, np.int16)
            elif j == 0:
                pred = x[:, i - 1, 0]
            else:
                pred = median_prediction(x[:, i, j - 1], x[:, i - 1, j], x[:, i - 1, j - 1])
            x[:, i, j] = (pred + r[:, i, j]) % 256
    return x.astype(np.uint8)


def pack(data: str, splits: list[str], out: Path) -> None:
    ds = load_dataset(data)
    if splits:
        ds = ds.select_split(*splits)
    buf = io.BytesIO()
    np.savez(
        buf,
        residuals=residuals(ds.images),
        labels=ds.labels,
        split=ds.split,
        rows=ds.rows if ds.rows is not None else np.zeros(0, np.int64),
        class_names=np.array(ds.class_names),
        skipped=np.array(ds.skipped),
        sha256=np.array(hashlib.sha256(ds.images.tobytes()).hexdigest()),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, filters=XZ_FILTERS))
    print(f"{out}: {len(ds)} faces ({', '.join(ds.splits)}), {out.stat().st_size / 2**20:.1f} MiB")


def unpack(packed: Path, out: Path) -> None:
    with np.load(io.BytesIO(lzma.decompress(packed.read_bytes())), allow_pickle=False) as z:
        images = restore(z["residuals"])
        if hashlib.sha256(images.tobytes()).hexdigest() != str(z["sha256"]):
            raise SystemExit(f"{packed}: unpacked faces differ from the packed ones")
        arrays = {k: z[k] for k in ("labels", "split", "class_names", "skipped")}
        rows = z["rows"] if len(z["rows"]) else None
    from facial_emotion.data.dataset import FaceDataset

    ds = FaceDataset(
        images=images,
        labels=arrays["labels"],
        split=arrays["split"],
        rows=rows,
        class_names=tuple(arrays["class_names"].tolist()),
        skipped=int(arrays["skipped"]),
    )
    write_npz(ds, out)
    print(f"{out}: {len(ds)} faces")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="", help="comma list (default: all)")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("unpack")
    p.add_argument("packed", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.data, [s for s in args.splits.split(",") if s], args.out)
    else:
        unpack(args.packed, args.out)


if __name__ == "__main__":
    main()
