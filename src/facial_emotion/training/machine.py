"""The machine a run trains on: which device, what the model's metadata records, and whether bf16
pays off."""

from __future__ import annotations

import os
from pathlib import Path

# CPU flags of native bf16 matrix maths: Intel AMX (Sapphire Rapids on) and AVX512-BF16 (AMD Zen 4 on,
# Cooper Lake). Measured for vgg-m on 2 cores: bf16 534 vs fp32 215 img/s on a Xeon with AMX, 513 vs 294
# on an AMD EPYC with AVX512-BF16; on an AVX2-only EPYC bf16 is emulated and several times slower.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpuinfo_text() -> str:
    """/proc/cpuinfo, or "" where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The words of the `flags` lines of /proc/cpuinfo (or of the given text)."""
    text = cpuinfo_text() if cpuinfo is None else cpuinfo
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return flags


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bf16 flags of this CPU (from /proc/cpuinfo, or the given text); [] if none or unknown."""
    flags = cpu_flags(cpuinfo)
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """ "cpu" or "cuda" (auto: cuda where torch sees a GPU); ValueError for a GPU torch cannot see."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here (use --device cpu)")
    return device


def training_machine(precision: str, device: str = "cpu") -> str:
    """CPU model, cores and precision, e.g. "AMD EPYC 9R14, 2 cores, fp32", or the GPU's name and
    precision, e.g. "NVIDIA H200, bf16"."""
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name()}, {precision}"
    names = [
        line.split(":", 1)[1].strip() for line in cpuinfo_text().splitlines() if line.startswith("model name")
    ]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} cores, {precision}"


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """bf16 autocast only pays off with native bf16 (on CPUs AMX or AVX512-BF16; GPUs from Ampere on);
    elsewhere fp32 is faster."""
    if precision == "auto":
        if device == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_bf16_flags() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}")
    return precision
