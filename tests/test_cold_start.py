"""``tokrace --help`` starts cold without the heavy libraries: they load in the subcommand that needs
them. Not timed (the figure is ``bench/cold_start.py``'s): a fresh interpreter builds the parser and
prints every help page, then ``sys.modules`` must hold none of them.

pydantic stays on the path: the flags are generated from the one ``Settings`` model. Its validator is
built on first use (``defer_build``), which keeps ``--help`` near 0.2 s on a busy 2-CPU machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "numpy", "gguf", "httpx", "httpx_sse", "psutil", "pynvml", "llama_cpp", "textual", "rich", "matplotlib",
    "huggingface_hub", "asyncio",
    # tokrace's own application layer and engines load models: no help page needs them.
    "tokrace.session", "tokrace.race_setup", "tokrace.bench", "tokrace.backends.llama_cpp_backend",
    "tokrace.backends.openai_backend", "tokrace.model_registry.gguf_meta", "tokrace.backends.split_planner",
    "tokrace.backends.device_telemetry", "tokrace.tui",
)

_CODE = """
import contextlib, io, json, sys
import tokrace.cli.main as main

parser = main.build_parser()
commands = sorted(parser._subparsers._group_actions[0].choices)
for argv in [["--help"], *([c, "--help"] for c in commands)]:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        main.main(argv)
    assert "usage: tokrace" in out.getvalue(), argv
print(json.dumps({"commands": commands, "modules": sorted(sys.modules)}))
"""


def test_help_imports_no_heavy_library(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _CODE], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"chat", "race", "bench", "models", "plan", "export"} <= set(result["commands"])
    modules = set(result["modules"])
    assert "tokrace.cli.main" in modules and "tokrace.settings" in modules  # it really ran
    loaded = sorted(m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + "."))
    assert loaded == []
