"""tokrace against llama.cpp's own tools, same file, same llama.cpp source, same build flags, one run.

    python bench/peers.py MODEL.gguf [--threads 2] [--rounds 3] [--n-gen 128] [--flash-attn auto]
                                     [--no-tui] [--build-only]

1. Builds ``llama-bench`` and ``llama-server`` once from the llama.cpp source vendored in the installed
   llama-cpp-python's sdist (fetched from the package index with ``pip download --no-binary``), with the
   same ``CMAKE_ARGS`` tokrace's own build uses (``scripts/_venv.sh``), cached under tokrace's cache
   dir (``peers/<version>/``). About 10 minutes on 2 cores the first time.
2. Then, interleaved round by round so that load on the machine hits both sides alike:
   - ``pp512`` / ``tg128``: ``llama-bench -r 1`` vs ``tokrace bench -r 1`` (same threads, same
     flash-attention setting: ``auto`` by default, both tools' default);
   - a greedy chat reply of ``--n-gen`` tokens: llama-server's ``timings.predicted_per_second`` vs
     ``tokrace chat --json``'s ``gen_tok_s`` (same prompt, same chat template, temperature 0);
   - what a user sees: the chat TUI running in a real pseudo-terminal (120×40, its output read and
     thrown away as a terminal would draw it), the same prompt typed in, its reply's ``gen_tok_s``
     from the speed log, vs ``tokrace chat --json`` (an in-process headless app is not the same: it
     does not write a screen to a terminal, and its test driver changes the event loop's pace).
3. Prints a Markdown table: median of each side over the rounds, and tokrace ÷ reference.

Ratios measured this way mean something on a busy machine; absolute figures do not (llama.cpp's
threads spin: any other load on a core collapses a decode).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                      "-DGGML_BMI2=ON")
PROMPT = "Explain in detail how a refrigerator keeps food cold."


def llama_cpp_python_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def tools_dir() -> Path:
    from tokrace.model_registry.paths import cache_dir

    return cache_dir() / "peers" / llama_cpp_python_version()


def build_tools(jobs: int = os.cpu_count() or 2) -> Path:
    """``llama-bench`` and ``llama-server`` from the vendored llama.cpp; returns their folder."""
    out = tools_dir()
    bench, server = out / "llama-bench", out / "llama-server"
    if bench.exists() and server.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    version = llama_cpp_python_version()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "--disable-pip-version-check", "-q", "-d", tmp, f"llama-cpp-python=={version}"],
                       check=True)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = out / "build"  # kept: an interrupted build resumes
        cmake_args = os.environ.get("CMAKE_ARGS", DEFAULT_CMAKE_ARGS).split()
        subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DBUILD_SHARED_LIBS=OFF", *cmake_args], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--config", "Release", "-j", str(jobs),
                        "--target", "llama-bench", "llama-server"], check=True, stdout=subprocess.DEVNULL)
        for tool in ("llama-bench", "llama-server"):
            shutil.copy2(next(p for p in build.rglob(tool) if p.is_file()), out / tool)
    return out


def run_json(cmd: list[str]) -> object:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_reply(port: int, n_gen: int) -> float:
    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": n_gen,
                       "temperature": 0, "cache_prompt": False}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return float(json.load(resp)["timings"]["predicted_per_second"])


def start_server(tools: Path, model: Path, threads: int, flash_attn: str,
                 extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int]:
    """llama-server on a free loopback port (``extra``: more of its flags, e.g. a draft model)."""
    port = free_port()
    proc = subprocess.Popen([str(tools / "llama-server"), "-m", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "-t", str(threads), "-fa", flash_attn, "-c", "4096",
                             "--no-webui", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama-server did not come up in 120 s")


class PtyApp:
    """A command in a pseudo-terminal of ``cols``×``rows``; its output is drained on a thread (what a
    terminal does), ``quiet_for`` tells how long it has written nothing."""

    def __init__(self, cmd: list[str], env: dict[str, str], cols: int = 120, rows: int = 40) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the TUI
            os.execvpe(cmd[0], cmd, env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.pid, self.fd = pid, fd
        self.bytes = 0
        self.tail = b""
        """The last bytes written to the terminal (to find a status text in)."""
        self.last_output = time.monotonic()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)
            self.tail = (self.tail + data)[-65536:]
            self.last_output = time.monotonic()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_output

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with _suppress():
            self.type("\x11")  # Ctrl+Q
        while time.monotonic() < deadline:
            done, _status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.2)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        with _suppress():
            os.close(self.fd)


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)


def tui_reply(model: Path, threads: str, n_gen: int, flash_attn: str, home: Path) -> float:
    """``gen_tok_s`` of one reply to ``PROMPT`` typed into the chat TUI in a pseudo-terminal."""
    log = home / "data" / "speedlog" / "replies.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    env = {**os.environ, "TOKRACE_HOME": str(home), "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    app = PtyApp([sys.executable, "-m", "tokrace", "-m", str(model), "-n", str(n_gen), "--temperature", "0",
                  "--threads", threads, "--flash-attn", flash_attn], env)
    try:
        deadline = time.monotonic() + 120
        # Loaded: the status line names the threads and context ("… · 2 threads · ctx 4096 …").
        while time.monotonic() < deadline and not (b"threads" in app.tail and b"ctx" in app.tail):
            time.sleep(0.1)
        while time.monotonic() < deadline and app.quiet_for() < 0.6:
            time.sleep(0.1)  # and drawn
        app.type(PROMPT + "\r")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) > before:
                return float(json.loads(lines[before])["gen_tok_s"] or 0)
            time.sleep(0.2)
        raise SystemExit("the TUI did not record a reply in 600 s")
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, nargs="?")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                    help="the same setting for both sides (default: auto, both tools' default)")
    ap.add_argument("--no-tui", action="store_true", help="skip the TUI-in-a-terminal comparison")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args(argv)
    tools = build_tools()
    print(f"reference tools: {tools}", file=sys.stderr)
    if args.build_only:
        return 0
    if args.model is None:
        ap.error("give a MODEL.gguf")
    t, fa = str(args.threads), args.flash_attn
    tokrace = [sys.executable, "-m", "tokrace"]
    chat_name, tui_name = f"chat {args.n_gen}", f"TUI in a terminal, {args.n_gen}"
    figures: dict[str, list[tuple[float, float]]] = {"pp512": [], "tg128": [], chat_name: []}
    if not args.no_tui:
        figures[tui_name] = []
    home = Path(tempfile.mkdtemp(prefix="tokrace-peers-"))  # the TUI's speed log, settings: its own
    server, port = start_server(tools, args.model, args.threads, args.flash_attn)
    try:
        server_reply(port, 8)  # warm-up
        for r in range(args.rounds):
            ref = run_json([str(tools / "llama-bench"), "-m", str(args.model), "-p", "512", "-n", "128",
                            "-r", "1", "-t", t, "-fa", fa, "-o", "json"])
            ours = run_json([*tokrace, "bench", str(args.model), "-p", "512", "-n", "128", "-r", "1",
                             "--threads", t, "--flash-attn", fa, "--json", "--no-log", "-q"])
            assert isinstance(ref, list) and isinstance(ours, list)
            for test in ("pp512", "tg128"):
                n_prompt, n_gen = (512, 0) if test == "pp512" else (0, 128)
                a = next(x["avg_ts"] for x in ref if x["n_prompt"] == n_prompt and x["n_gen"] == n_gen)
                b = next(x["avg_ts"] for x in ours if x["test"] == test)
                figures[test].append((float(a), float(b)))
            a = server_reply(port, args.n_gen)
            chat = run_json([*tokrace, "chat", "-m", str(args.model), "--prompt", PROMPT, "-n",
                             str(args.n_gen), "--temperature", "0", "--threads", t, "--flash-attn", fa,
                             "--json"])
            assert isinstance(chat, dict)
            headless = float(chat["gen_tok_s"] or 0)
            figures[chat_name].append((a, headless))
            if not args.no_tui:
                figures[tui_name].append((headless, tui_reply(args.model, t, args.n_gen, fa, home)))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"| figure ({args.model.name}, {t} threads, flash attention {args.flash_attn}) | llama.cpp's tool "
          "| tokrace | ratio | rounds' ratios (min–max) |\n| --- | ---: | ---: | ---: | ---: |")
    for name, pairs in figures.items():
        ref_med = statistics.median(p[0] for p in pairs)
        our_med = statistics.median(p[1] for p in pairs)
        tool = ("llama-server" if name.startswith("chat") else "tokrace chat --json" if name.startswith("TUI")
                else "llama-bench")
        ratios = [p[1] / p[0] for p in pairs if p[0]]
        spread = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "–"
        print(f"| {name} | {tool} {ref_med:.1f} | {our_med:.1f} | {our_med / ref_med:.2f} | {spread} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
