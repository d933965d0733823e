"""Measure F2 in the running app (issue 14): keystroke latency in the settings form, and the chat's tok/s
while someone types in F2 compared with no F2, on a generated model with Gemma 3's 262k vocabulary.

    .venv/bin/python scripts/f2_latency.py [--tokens 300] [--old]

``--old`` puts back what F2 did before: read the GGUF header (``HeadBytes.from_file``, its cache cleared
as when the issue was filed) on every keystroke, on the UI thread. Figures are printed; nothing is
asserted (a busy machine changes them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_gguf import write_tiny_llama  # noqa: E402

from tokrace.backends.base import GenerationParams  # noqa: E402
from tokrace.backends.model_bytes import HeadBytes  # noqa: E402
from tokrace.model_registry import gguf_meta  # noqa: E402
from tokrace.settings import Settings  # noqa: E402
from tokrace.tui.app import TokraceApp  # noqa: E402
from tokrace.tui.screens.settings_screen import SettingsScreen  # noqa: E402

VOCAB = 262_144


def use_old_behaviour(path: Path) -> None:
    original = SettingsScreen.check

    def check(self: SettingsScreen) -> Settings | None:
        gguf_meta._read_gguf_info_cached.cache_clear()  # as filed: no header cache yet
        self.head = HeadBytes.from_file(str(path))  # the old per-keystroke read
        return original(self)

    SettingsScreen.check = check  # type: ignore[method-assign]


HANDLER_S: list[float] = []
"""UI-thread time of each keystroke's handler in the form (replan and redraw the plan text)."""


def time_the_handler() -> None:
    original = SettingsScreen.on_input_changed

    def timed(self: SettingsScreen, event: object) -> None:
        t = time.perf_counter()
        original(self, event)  # type: ignore[arg-type]
        HANDLER_S.append(time.perf_counter() - t)

    SettingsScreen.on_input_changed = timed  # type: ignore[method-assign]


async def measure(path: Path, n_tokens: int) -> None:
    app = TokraceApp(settings=Settings(model=str(path), n_threads=1),
                     params=GenerationParams(max_tokens=n_tokens, temperature=0.0, seed=1))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.backend is None or app.chat.prompt.disabled:
            await pilot.pause(0.05)

        async def reply(typing: bool) -> float:
            app.chat.action_new_chat()
            app.chat.prompt.value = "tell me a long story"
            await pilot.press("enter")
            if typing:
                await pilot.press("f2")
                while not isinstance(app.screen, SettingsScreen):
                    await pilot.pause(0.01)
                app.screen.query_one("#n_ctx").focus()
                while app.chat.generating:
                    for key in "2048" + "backspace " * 4:
                        if key.strip():
                            await pilot.press(key.strip())
                        await pilot.pause(0.05)
                await pilot.press("escape")
            while app.chat.generating or app.chat.meter is None:
                await pilot.pause(0.05)
            stats = app.chat.meter.stats
            return stats.gen_tok_s or 0.0

        plain = [await reply(False) for _ in range(2)]
        during = [await reply(True) for _ in range(2)]
        await pilot.press("f2")
        while not isinstance(app.screen, SettingsScreen):
            await pilot.pause(0.01)
        app.screen.query_one("#n_ctx").focus()
        latencies = []
        HANDLER_S.clear()
        for key in "1024" * 3:
            t = time.perf_counter()
            await pilot.press(key)
            latencies.append(time.perf_counter() - t)
        await pilot.press("escape")
    print(f"F2 keystroke, {len(latencies)} keys: UI thread busy in the handler median "
          f"{1000 * statistics.median(HANDLER_S):.1f} ms, max {1000 * max(HANDLER_S):.1f} ms; Pilot press to"
          f" idle median {1000 * statistics.median(latencies):.0f} ms")
    print(f"chat tok/s without F2: {', '.join(f'{v:.1f}' for v in plain)}; while typing in F2: "
          f"{', '.join(f'{v:.1f}' for v in during)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--old", action="store_true", help="read the header per keystroke, as before")
    a = ap.parse_args()
    os.environ.setdefault("TOKRACE_HOME", tempfile.mkdtemp(prefix="tokrace-f2-"))
    folder = Path(tempfile.mkdtemp(prefix="tokrace-f2-model-"))
    path = write_tiny_llama(folder / "vocab262k.gguf", n_layer=4, n_embd=128, n_ff=256,
                            extra_tokens=VOCAB - 259, n_ctx=4096, name="vocab-262k")
    t = time.perf_counter()
    HeadBytes.from_file(str(path))
    print(f"model {path.stat().st_size / 1e6:.0f} MB, vocab {VOCAB}; one header read (the old per-key"
          f" cost): {1000 * (time.perf_counter() - t):.0f} ms")
    time_the_handler()
    if a.old:
        use_old_behaviour(path)
        print("(--old: header read on every keystroke)")
    asyncio.run(measure(path, a.tokens))


if __name__ == "__main__":
    main()
