"""Save screenshots/chat.svg: the app itself, headless, chatting with the real default model.

    .venv/bin/python scripts/chat_screenshot.py [--model M] [--prompt TEXT] [--out screenshots/chat.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tokrace.backends.base import GenerationParams  # noqa: E402
from tokrace.tui.app import TokraceApp  # noqa: E402


async def shoot(model: str | None, prompt: str, out: Path, max_tokens: int) -> None:
    app = TokraceApp(model_ref=model, params=GenerationParams(max_tokens=max_tokens, temperature=0.2,
                                                             seed=42))
    async with app.run_test(size=(120, 36)) as pilot:
        while app.chat.backend is None:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.chat.send(prompt)
        await pilot.pause(0.5)
        while app.chat.generating:
            await pilot.pause(0.1)
        await pilot.pause(1.0)  # a few telemetry ticks after the end
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))
    print(f"saved {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompt", default="Give me three tips for writing a clear README, as a list.")
    ap.add_argument("--out", type=Path, default=ROOT / "screenshots" / "chat.svg")
    ap.add_argument("--max-tokens", type=int, default=160)
    a = ap.parse_args()
    os.environ.setdefault("TOKRACE_HOME", "/tmp/tokrace-screenshot-home")  # keep the user's log clean
    asyncio.run(shoot(a.model, a.prompt, a.out, a.max_tokens))


if __name__ == "__main__":
    main()
