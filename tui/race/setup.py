"""What the race screen starts with: the two models and the settings their lanes share."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokrace.backends.placement import PlacementRequest
from tokrace.backends.race import RaceMode
from tokrace.backends.race_lane import Lane
from tokrace.load import LoadSpec


@dataclass(slots=True)
class RaceSetup:
    """What ``tokrace race A B`` (or Ctrl+R) starts the screen with."""

    refs: list[str | None] = field(default_factory=lambda: [None, None])
    mode: RaceMode | None = None
    threads: int | None = None
    request: PlacementRequest = field(default_factory=PlacementRequest)
    drafts: tuple[str | None, str | None] = (None, None)
    draft_k: int | None = None
    base: LoadSpec | None = None
    """Load settings both lanes share (flash attention, batch sizes); ``None``: the defaults."""
    system: str | None = None
    """The system prompt both lanes start from (``--system``)."""
    lanes: list[Lane] | None = None
    """Lanes with loaded backends (tests, scripts); skips resolving and loading."""
    record: bool = True
    """Write each lane's reply to the speed log."""
