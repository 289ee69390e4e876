"""How to install an optional extra, said the same way by every message that needs one."""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """``pip install 'facial-emotion[serve]'``, and the project's own script for a checkout (where the
    package name alone would look for it on PyPI)."""
    return f"pip install 'facial-emotion[{extra}]' (in a checkout of the project: bash scripts/install.sh {extra})"
