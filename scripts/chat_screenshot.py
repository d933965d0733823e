"""Save screenshots of the chat: the app itself, headless, chatting with the real default model, at
80×24 and 160×45 (``screenshots/chat-80x24.svg``, ``screenshots/chat-160x45.svg``) or one ``--size``.

    .venv/bin/python scripts/chat_screenshot.py [--model M] [--prompt TEXT] [--size 120x36 --out F.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tokrace.backends.base import GenerationParams  # noqa: E402
from tokrace.tui.app import TokraceApp  # noqa: E402


async def shoot(model: str | None, prompt: str, out: Path, max_tokens: int, size: tuple[int, int]) -> None:
    app = TokraceApp(model_ref=model, params=GenerationParams(max_tokens=max_tokens, temperature=0.2,
                                                             seed=42))
    async with app.run_test(size=size) as pilot:
        while app.chat.backend is None:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.chat.prompt.value = prompt
        await pilot.press("enter")
        await pilot.pause(0.5)
        while app.chat.generating:
            await pilot.pause(0.1)
        await pilot.pause(1.0)  # a few telemetry ticks after the end
        app.chat.prompt.cursor_blink = False
        app.chat.prompt.value = "A follow-up can span lines:\nShift+Enter or Ctrl+J adds one, Enter sends."
        await pilot.pause(0.3)
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))
    print(f"saved {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompt", default="Write a short poem about tea, four lines.")
    ap.add_argument("--size", default=None, help="WIDTHxHEIGHT (default: both 80x24 and 160x45)")
    ap.add_argument("--out", type=Path, default=None, help="with --size: the file to write")
    ap.add_argument("--max-tokens", type=int, default=80)
    a = ap.parse_args()
    os.environ.setdefault("TOKRACE_HOME", "/tmp/tokrace-screenshot-home")  # keep the user's log clean
    sizes = [a.size] if a.size else ["80x24", "160x45"]
    for text in sizes:
        width, height = (int(n) for n in text.lower().split("x"))
        out = a.out if a.out and a.size else ROOT / "screenshots" / f"chat-{width}x{height}.svg"
        asyncio.run(shoot(a.model, a.prompt, out, a.max_tokens, (width, height)))


if __name__ == "__main__":
    main()
