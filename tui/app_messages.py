"""Messages the app's model loader posts to the UI thread (a load runs on a worker)."""

from __future__ import annotations

from textual.message import Message

from tokrace.model_registry.errors import TokraceError
from tokrace.session import Session


class ModelLoaded(Message):
    def __init__(self, session: Session, cpu_bandwidth: float | None = None) -> None:
        super().__init__()
        self.session = session
        self.cpu_bandwidth = cpu_bandwidth


class ModelLoadFailed(Message):
    def __init__(self, error: TokraceError) -> None:
        super().__init__()
        self.error = error


class LoadProgress(Message):
    """Posted from the loading thread; a newer one replaces a queued older one."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgress)
