"""The settings as command-line flags: each command adds the flags of the settings it takes
(``add_settings_args``, from each setting's ``Knob``) and overlays what was given on the file's settings
for one run (``settings_from_args``)."""

import argparse
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydantic import ValidationError

from tokrace.model_registry.errors import TokraceError
from tokrace.setting_values import Parser, boolean
from tokrace.settings import Settings, problem

GROUP_TITLES: dict[str, str] = {
    "generation": "generation",
    "gpu": "GPU offload (ignored by CPU-only llama.cpp builds)",
    "draft": "speculative decoding",
}
"""argparse group key → the group's title in ``--help``."""


def _argparse_type(name: str, parse: Parser) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{err}, got {value!r}") from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def setting_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` that parses setting ``name``'s values, for a command's own flag that takes
    one (``race --draft-k`` for its drafted lanes): the same bounds and message as the setting's flag."""
    knob = Settings.knob(name)
    return _argparse_type(name, knob.flag_parse or knob.parse)


def add_settings_args(parser: argparse.ArgumentParser, names: Sequence[str], *,
                      required: Collection[str] = ()) -> None:
    """Add the flags of settings ``names`` to ``parser``, in their argparse groups.

    Every default is ``None``, never a real value: argparse never produces ``None`` for a flag that was
    given, so ``settings_from_args`` tells "not given" (the file's value stands) from "given". Booleans
    get ``--x``/``--no-x`` so a run can turn off what the file turns on.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names:
        knob = Settings.knob(name)
        if not knob.flags:
            continue
        target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
        if knob.group is not None:
            if knob.group not in groups:
                groups[knob.group] = parser.add_argument_group(GROUP_TITLES[knob.group])
            target = groups[knob.group]
        kwargs: dict[str, Any] = {"dest": knob.dest, "default": None, "help": knob.help}
        if name in required:
            kwargs["required"] = True
        if knob.parse is boolean:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = knob.metavar
            if knob.choices is not None:
                kwargs["choices"] = knob.choices
            elif knob.argparse_parses:
                kwargs["type"] = _argparse_type(name, knob.flag_parse or knob.parse)
        target.add_argument(*knob.flags, **kwargs)


def settings_from_args(args: argparse.Namespace, base: Settings) -> Settings:
    """``base`` with every setting flag given in ``args`` applied (for this run only: nothing is saved).

    A value argparse did not check (``--tensor-split``) that is bad raises ``TokraceError``:
    ``--tensor-split '0,0': expected ...``.
    """
    given: dict[str, object] = {}
    for name in Settings.model_fields:
        dest = Settings.knob(name).dest
        value = getattr(args, dest, None) if dest else None
        if value is not None:
            given[name] = value
    try:
        return Settings.model_validate({**base.model_dump(), **given})
    except ValidationError as err:
        key, reason, value = problem(err)
        raise TokraceError(f"{Settings.cli_flag(key)} {value!r}: {reason}", kind="settings") from None
