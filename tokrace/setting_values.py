"""The parsers of setting values: one per kind of value, shared by the flags, the F2 form and
settings.toml (``tokrace.settings`` declares which setting takes which)."""

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

Parser = Callable[[object], Any]
"""Turns a raw value (text from a flag or the form, or a TOML value) into the field's value; raises
``ValueError`` whose message says what was expected, without the input (each interface adds it)."""


def whole_number(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """A parser for an ``int`` of at least ``minimum`` (and at most ``maximum``) from an int or its text."""
    if minimum is not None and maximum is not None:
        want = f"expected a whole number from {minimum} to {maximum}"
    elif minimum is None:
        want = "expected a whole number"
    elif minimum == 1:
        want = "expected a whole number above 0"
    else:
        want = f"expected a whole number of {minimum} or more"

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError(want)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise ValueError(want) from None
        else:
            raise ValueError(want)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ValueError(want)
        return number

    return parse


def thread_count(value: object) -> int:
    """CPU threads: a whole number from 1 to this machine's logical CPUs (more only slows llama.cpp
    down: its threads spin at barriers waiting for each other, e.g. 0.2 tok/s for 999 on 2 cores)."""
    cores = os.cpu_count() or 1
    want = f"expected a whole number from 1 to {cores} (this machine's CPU threads)"
    try:
        n = whole_number(1)(value)
    except ValueError:
        raise ValueError(want) from None
    if n > cores:
        raise ValueError(want)
    return n


def number(minimum: float | None = None) -> Parser:
    """A parser for a finite ``float`` of at least ``minimum`` from a number or its text."""
    want = "expected a number" if minimum is None else f"expected a number of {minimum:g} or more"

    def parse(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(want)
        try:
            result = float(value.strip() if isinstance(value, str) else value)
        except ValueError:
            raise ValueError(want) from None
        if not math.isfinite(result) or (minimum is not None and result < minimum):
            raise ValueError(want)
        return result

    return parse


def text(what: str) -> Parser:
    """A parser for non-empty text (surrounding blanks dropped); ``what`` names what it should be."""

    def parse(value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected {what}")
        return value.strip()

    return parse


def choice(options: Sequence[str]) -> Parser:
    """A parser for one of ``options`` (exact, lower case)."""
    want = "expected one of " + ", ".join(options)

    def parse(value: object) -> str:
        if not isinstance(value, str) or value.strip() not in options:
            raise ValueError(want)
        return value.strip()

    return parse


def fraction(value: object) -> float:
    """A number from 0 to 1 (a probability)."""
    want = "expected a number from 0 to 1"
    try:
        result = number(0)(value)
    except ValueError:
        raise ValueError(want) from None
    if result > 1:
        raise ValueError(want)
    return result


def boolean(value: object) -> bool:
    """``true``/``false`` (TOML booleans, or that text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("expected true or false")


def split_fractions(value: object) -> list[float]:
    """Fractions of the model per GPU: ``"1,1"`` or a list of numbers, non-negative, positive sum."""
    want = "expected non-negative numbers with a positive sum, separated by commas (e.g. 1,1)"
    if isinstance(value, str):
        parts: Sequence[object] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        parts = value
    else:
        raise ValueError(want)
    try:
        values = [number(0)(v) for v in parts]
    except ValueError:
        raise ValueError(want) from None
    if not values or sum(values) <= 0:
        raise ValueError(want)
    return values
