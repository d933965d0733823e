"""Signals and quitting, as a user meets them: the real ``tokrace`` process in a pseudo-terminal (TUI)
or a pipe (CLI). SIGTERM/SIGHUP end like Ctrl+C (reply logged, terminal restored, 143/129); Ctrl+Q quits
even while a load waits on a Hub that never answers."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults_network import SilentServer

from tokrace.backends.base import CancelToken
from tokrace.backends.events import StreamEvent
from tokrace.cli.chat_cmd import _interruptible
from tokrace.speedlog import SpeedLog

ROOT = Path(__file__).resolve().parents[1]
GUARD_S = 180.0  # only a hang reaches it; never a measure of speed
ALT_SCREEN_OFF = b"\x1b[?1049l"
ESCAPE = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z~]")


class PtyApp:
    """``tokrace`` (the TUI) in a pseudo-terminal, its output collected by a reader thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        os.set_blocking(self.master, True)
        full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT,
                                     stdin=slave, stdout=slave, stderr=slave, env=full_env,
                                     start_new_session=True)
        os.close(slave)
        self.output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.output += chunk

    def seen(self) -> bytes:
        with self._lock:
            return bytes(self.output)

    def wait_for(self, text: bytes, since: int = 0) -> int:
        """Wait until the regex ``text`` matches the screen text (escape codes removed) after offset
        ``since`` of the raw output; returns the raw output's length then."""
        deadline = time.monotonic() + GUARD_S
        pattern = re.compile(text)
        while time.monotonic() < deadline:
            out = self.seen()
            if pattern.search(ESCAPE.sub(b" ", out[since:])):
                return len(out)
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {out[-2000:]!r}"
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared: {self.seen()[-2000:]!r}")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_exit(self) -> int:
        try:
            code = self.proc.wait(timeout=GUARD_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the app did not exit (hang)") from None
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def run_pty() -> Iterator[list[PtyApp]]:
    apps: list[PtyApp] = []
    yield apps
    for app in apps:
        app.close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_after_a_reply_exits_128_plus_it_with_the_terminal_restored_and_the_reply_logged(
        tiny_model: Path, run_pty: list[PtyApp], sig: signal.Signals, code: int) -> None:
    app = PtyApp("-m", str(tiny_model), "-n", "4000", "--temp", "0")
    run_pty.append(app)
    loaded = app.wait_for(b"threads")  # loaded: the status line names the threads
    app.type(b"hello\r")
    # The reply runs (the clock counts) or ended: either way it must be logged.
    shown = app.wait_for(rb"elapsed +\d", since=loaded)
    app.proc.send_signal(sig)
    assert app.wait_exit() == code
    out = app.seen()
    assert ALT_SCREEN_OFF in out[shown:]  # Textual's own exit restored the terminal
    assert b"Traceback" not in out
    records = SpeedLog.open().read()
    assert len(records) == 1  # the reply, finished or stopped by the signal, is not lost


def test_ctrl_q_during_a_load_stuck_on_the_network_quits_at_once(
        run_pty: list[PtyApp], tmp_path: Path) -> None:
    server = SilentServer()
    try:
        app = PtyApp("-m", "hf:acme/Tiny-GGUF:Q4_K_M", env={
            "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "hub"),
            "TOKRACE_HUB_TIMEOUT_S": "3600",  # the load would wait an hour: only quitting ends it
        })
        run_pty.append(app)
        app.wait_for(b"Quit")  # the footer is drawn
        deadline = time.monotonic() + GUARD_S
        while not server.accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.accepted, "the load never reached the Hub"
        app.type(b"\x11")  # Ctrl+Q
        assert app.wait_exit() == 0
        assert ALT_SCREEN_OFF in app.seen() and b"Traceback" not in app.seen()
    finally:
        server.close()


def test_sigterm_and_sighup_stop_a_cli_reply_like_ctrl_c() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        before = signal.getsignal(sig)
        cancel = CancelToken()
        stopped_by: list[int] = []

        def events(sig: signal.Signals = sig) -> Iterator[StreamEvent]:
            os.kill(os.getpid(), sig)  # delivered to the handler, not the default (death)
            yield from ()

        assert list(_interruptible(events(), cancel, stopped_by)) == []
        assert cancel.cancelled and stopped_by == [sig]
        assert signal.getsignal(sig) == before  # restored once the reply ended


def test_the_tui_chats_when_the_data_folder_is_a_file(tiny_model: Path, run_pty: list[PtyApp],
                                                      isolated_dirs: Path) -> None:
    import shutil

    shutil.rmtree(isolated_dirs / "data", ignore_errors=True)
    (isolated_dirs / "data").write_text("")
    app = PtyApp("-m", str(tiny_model), "-n", "8", "--temp", "0")
    run_pty.append(app)
    loaded = app.wait_for(b"threads")  # the model loaded: the log is not opened at load
    app.type(b"hello\r")
    # A notice after the reply, not a crash. The toast is drawn over the chat, so the compositor may cut
    # its line at the edges of the widgets below it (escape codes, read as blanks, inside a word).
    app.wait_for(rb"speed\s*log\s*not\s*w\s*r\s*i\s*t\s*t\s*e\s*n", since=loaded)
    app.type(b"\x11")  # Ctrl+Q
    assert app.wait_exit() == 0
    assert b"Traceback" not in app.seen()
