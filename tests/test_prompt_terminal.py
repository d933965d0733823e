"""``tokrace chat`` at the terminal's edges: model output that would drive a terminal (kind 6) and input
that is not UTF-8 (kind 7). Real processes, real llama.cpp, scripted GGUFs."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_gguf import NEWLINE, write_scripted_llama

from tokrace.backends.textstream import visible_controls

ROOT = Path(__file__).resolve().parents[1]
# ESC ] 0 ; pwned BEL sets the window title; U+009D (C2 9D in UTF-8) is the 8-bit OSC; then "é".
ESCAPE_CHAIN = [NEWLINE, "<0x1B>", "<0x5D>", "<0x30>", "<0x3B>", "▁pwned", "<0x07>", "<0xC2>", "<0x9D>",
                "<0xC3>", "<0xA9>"]
REPLY = "\x1b]0; pwned\x07\x9dé"


@pytest.fixture(scope="module")
def escape_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted_llama(tmp_path_factory.mktemp("esc") / "esc.gguf", ESCAPE_CHAIN, words=["▁pwned"],
                                chat_template="{{ messages[-1]['content'] }}{{ '\\n' }}")


def run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, capture_output=True,
                          input=stdin, env={**os.environ, **(env or {})}, timeout=120)


def chat_args(model: Path, *more: str) -> list[str]:
    return ["chat", "-m", str(model), "--temperature", "0", "-n", "16", *more]


def run_on_a_terminal(args: list[str]) -> tuple[int, bytes]:
    """Run with stdout on a pseudo-terminal; return the exit status and what the terminal received."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, stdout=slave,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    received = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    proc.stderr.read()  # type: ignore[union-attr]
    return proc.wait(timeout=60), received


# -- kind 6 -----------------------------------------------------------------------------------------
def test_terminal_gets_visible_controls(escape_model: Path) -> None:
    code, received = run_on_a_terminal(chat_args(escape_model, "--prompt", "hi"))
    assert code == 0
    for byte in (b"\x1b", b"\x07", "\x9d".encode()):
        assert byte not in received, received
    text = received.decode()
    assert "␛]0; pwned␇" in text and "é" in text


def test_pipe_and_json_keep_the_exact_text(escape_model: Path) -> None:
    proc = run(*chat_args(escape_model, "--prompt", "hi"))
    assert proc.returncode == 0 and proc.stdout.decode() == REPLY + "\n"
    data = json.loads(run(*chat_args(escape_model, "--prompt", "hi", "--json")).stdout)
    assert data["text"] == REPLY


def test_visible_controls_keeps_length_and_ordinary_text() -> None:
    text = "tab\there\nnew line, ünïcode 😀" + "".join(map(chr, range(0x20))) + "\x7f\x80\x9f"
    shown = visible_controls(text)
    assert len(shown) == len(text) and shown.startswith("tab\there\nnew line, ünïcode 😀")
    assert not any(0x80 <= ord(c) <= 0x9F or (ord(c) < 0x20 and c not in "\t\n") or c == "\x7f"
                   for c in shown)


def test_output_encoding_that_cannot_hold_the_reply_is_not_a_crash(escape_model: Path) -> None:
    proc = run(*chat_args(escape_model, "--prompt", "hi"), env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


# -- kind 7 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("locale", [None, "C"])
def test_stdin_that_is_not_utf8_is_refused_in_one_line(escape_model: Path, locale: str | None) -> None:
    env = {"LC_ALL": locale, "LANG": locale} if locale else None
    proc = run(*chat_args(escape_model, "--prompt", "-"), stdin=b"caf\xe9\n", env=env)
    assert proc.returncode == 2
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "not UTF-8" in lines[0] and "offset 3" in lines[0], lines


def test_argument_that_is_not_utf8_is_refused_in_one_line(escape_model: Path) -> None:
    args = [os.fsencode(a) for a in chat_args(escape_model, "--prompt")] + [b"caf\xe9"]
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"tokrace.cli.main", *args], cwd=ROOT,
                          capture_output=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "--prompt" in lines[0] and "not UTF-8" in lines[0], lines


def test_utf8_stdin_with_a_byte_order_mark_is_read(escape_model: Path) -> None:
    proc = run(*chat_args(escape_model, "--prompt", "-", "--json"), stdin="\ufeffcafé\n".encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["text"] == REPLY
