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
    net = create_model(arch, len(want))  # its fresh head gives the new classes' rows
    head, fresh = head_name(net), net.state_dict()
    weight, bias = fresh[f"{head}.weight"].clone(), fresh[f"{head}.bias"].clone()
    old_weight, old_bias = state[f"{head}.weight"], state[f"{head}.bias"]
    old_row = {name: i for i, name in enumerate(have)}
    kept = [(i, old_row[name]) for i, name in enumerate(want) if name in old_row]
    if kept:
        new_rows, old_rows = zip(*kept, strict=True)
        weight[list(new_rows)] = old_weight[list(old_rows)]
        bias[list(new_rows)] = old_bias[list(old_rows)]
        bias[[i for i, name in enumerate(want) if name not in old_row]] = old_bias[list(old_rows)].mean()
    log.info(
        "classifier head: %s carried over; new: %s; dropped: %s",
        ", ".join(c for c in want if c in old_row) or "none",
        ", ".join(c for c in want if c not in old_row) or "none",
        ", ".join(c for c in have if c not in want) or "none",
    )
    return {**state, f"{head}.weight": weight, f"{head}.bias": bias}
