"""Start a run from weights trained for other classes: ``train --labels ferplus8 --init-from default``.

The body (every conv and norm) carries over as it is. The classifier head is one row per class: a
class both runs have keeps its row, so FER-2013's seven start where the earlier run left them; a
class new to this run (FER+'s contempt) gets a freshly initialised row whose bias is the mean of the
kept ones, so it starts neither certain nor impossible; a class only the earlier run had is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from facial_emotion.training.nets import create_model

log = logging.getLogger(__name__)


def head_name(model: nn.Module) -> str:
    """The state-dict prefix of the net's classifier head: its last linear layer."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def carry_over_classes(
    state: dict[str, Any], arch: str, have: Sequence[str], want: Sequence[str]
) -> dict[str, Any]:
    """``state`` (an ``arch`` net whose outputs are the classes ``have``) as weights for a net whose
    outputs are ``want``: the same dict when they match, else the head's rows moved by class name."""
    if list(have) == list(want):
        return state
    fresh = create_model(arch, len(want))
    head = head_name(fresh)
    weight = fresh.state_dict()[f"{head}.weight"].clone()
    bias = fresh.state_dict()[f"{head}.bias"].clone()
    old_weight, old_bias = state[f"{head}.weight"], state[f"{head}.bias"]
    kept = [c for c in want if c in have]
    for i, name in enumerate(want):
        if name in have:
            weight[i] = old_weight[list(have).index(name)]
            bias[i] = old_bias[list(have).index(name)]
    if kept:
        new_rows = [i for i, name in enumerate(want) if name not in have]
        bias[new_rows] = torch.stack([old_bias[list(have).index(c)] for c in kept]).mean()
    log.info(
        "classifier head: %s carried over; new: %s; dropped: %s",
        ", ".join(kept) or "none",
        ", ".join(c for c in want if c not in have) or "none",
        ", ".join(c for c in have if c not in want) or "none",
    )
    return {**state, f"{head}.weight": weight, f"{head}.bias": bias}
