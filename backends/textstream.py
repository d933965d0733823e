"""Token bytes → released text, the way a user should see it.

Two things hold text back: a token's bytes may be only part of a UTF-8 character (the rest comes with
later tokens), and text at the end may be the beginning of a stop string. ``TextAssembler.push``
returns what can be shown now; ``finish`` returns the rest. The stop string itself is never shown.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

# C0 controls (but tab and newline) and DEL become their visible "control pictures" (␛ for ESC), C1
# controls (0x80–0x9F: 8-bit CSI/OSC on some terminals) U+FFFD: model output must never drive a
# terminal (an OSC sequence can set the window title, BEL rings), and random weights emit every byte.
_CONTROL_PICTURES = (
    {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}
    | dict.fromkeys(range(0x80, 0xA0), 0xFFFD)
)


def visible_controls(text: str) -> str:
    """``text`` safe to write to a terminal: the same length, controls shown as symbols."""
    return text.translate(_CONTROL_PICTURES)


class TextAssembler:
    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = [s for s in stops if s]
        self._held = ""
        self.text = ""
        """Everything released so far."""
        self.stopped_by: str | None = None

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text it releases ('' when held back)."""
        if self.stopped_by is not None:
            return ""
        self._held += self._decoder.decode(piece)
        return self._release()

    def _release(self) -> str:
        held = self._held
        for stop in self._stops:
            at = held.find(stop)
            if at != -1:
                self.stopped_by = stop
                self._held = ""
                return self._emit(held[:at])
        keep = 0
        for stop in self._stops:
            # Longest suffix of held that is a proper prefix of this stop string.
            for n in range(min(len(stop) - 1, len(held)), 0, -1):
                if held.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        self._held = held[len(held) - keep:] if keep else ""
        return self._emit(held[: len(held) - keep])

    def _emit(self, text: str) -> str:
        self.text += text
        return text

    def finish(self) -> str:
        """Release whatever was held (an incomplete UTF-8 tail becomes U+FFFD)."""
        if self.stopped_by is not None:
            return ""
        self._held += self._decoder.decode(b"", final=True)
        tail, self._held = self._held, ""
        return self._emit(tail)
