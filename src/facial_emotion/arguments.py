"""Checks of the numbers a caller passes (the Python API, the service's settings): one place, so that
every argument is refused the same way, by name, before any work. Any real number type is taken
(numpy scalars, ``Fraction``: ``fps`` from a video library often is one) and returned as a plain
Python int or float; ``bool`` is not a number here (``True`` would silently be 1)."""

from __future__ import annotations

import math
import numbers


def real(value: object) -> float | None:
    """``value`` as a float if it is a real number, else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def finite_number(name: str, value: object) -> float:
    """A finite float, or a ValueError naming ``name``: nan passes every comparison (a nan frame time
    turned off the 'times must not go back' check)."""
    number = real(value)
    if number is None or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def positive_number(name: str, value: object) -> float:
    """A finite float above 0, or a ValueError naming ``name`` (a zero or negative deadline times
    everything out)."""
    number = real(value)
    if number is None or not 0 < number < math.inf:
        raise ValueError(f"{name} must be a finite number above 0, not {value!r}")
    return number


def whole_number(name: str, value: object, minimum: int = 1) -> int:
    """An int of at least ``minimum``, or a ValueError naming ``name``: int() would turn 1.5 into 1,
    and a 0 or a negative count was read as 'off', 'the default' or 'one' by the code using it."""
    number = real(value)
    if number is None or not number.is_integer() or number < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return int(number)
