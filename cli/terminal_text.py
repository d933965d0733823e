"""Text across the command line's edges: what the user gives (arguments, stdin) and what the model's
reply writes to a terminal.

Input rule: UTF-8 (a leading byte-order mark is dropped), nothing else. Bytes that are not UTF-8
(``printf 'caf\\xe9' | tokrace chat --prompt -``, or an argument Python could only keep as surrogate
escapes) are refused in one line that says where and how to convert, instead of a guess that changes
what the model reads.

Output rule: on a terminal, control characters in model text are shown as symbols
(``textstream.visible_controls``): a reply must not set the window title or ring the bell. A pipe or
a file gets the exact text, as does ``--json``.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tokrace.backends.textstream import visible_controls
from tokrace.model_registry.errors import TokraceError


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text; raises ``TokraceError`` (kind ``usage``) naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = data[err.start:err.start + 1].hex()
        raise TokraceError(
            f"{where} is not UTF-8 text (byte 0x{bad} at offset {err.start}): convert it first, for"
            " example with iconv -f latin1 -t utf-8",
            kind="usage", facts={"offset": err.start},
        ) from None


def text_arg(value: str, flag: str) -> str:
    """A command-line argument, checked: undecodable bytes (kept by Python as surrogate escapes)
    are refused the way stdin is."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_utf8(value.encode("utf-8", "surrogateescape"), f"the {flag} argument")
    return value


def read_prompt(value: str, flag: str = "--prompt", stdin: TextIO | None = None) -> str:
    """The prompt given as ``flag``: the argument itself, or stdin's bytes for ``-``."""
    if value != "-":
        return text_arg(value, flag)
    stream = stdin or sys.stdin
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text stream without bytes underneath (tests, embedding)
        return text_arg(stream.read(), "stdin")
    return decode_utf8(buffer.read(), "stdin")


class ReplyWriter:
    """Writes a streaming reply to ``out``: exact text to a pipe or file, visible controls on a
    terminal. Characters the stream's encoding cannot hold are replaced, never an error."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.terminal = self.out.isatty()
        encoding = (getattr(self.out, "encoding", None) or "utf-8").lower().replace("_", "-")
        if not encoding.startswith("utf") and hasattr(self.out, "reconfigure"):
            self.out.reconfigure(errors="replace")

    def write(self, text: str) -> None:
        self.out.write(visible_controls(text) if self.terminal else text)
        self.out.flush()
