"""``tokrace models pull|list|rm|search|info``: the model registry from the command line.

Progress goes to stderr (a redrawn line on a terminal, a line every few seconds otherwise); results go
to stdout, as JSON with ``--json``. Every failure is one ``TokraceError`` line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.units import format_bytes, format_params

_MODELS_HELP = "download, list, inspect and delete models"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help=_MODELS_HELP, description=_MODELS_HELP)

    def show_help(_args: argparse.Namespace) -> int:  # ``tokrace models`` without an action
        parser.print_help()
        return 0

    parser.set_defaults(func=show_help)
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")

    p = sub.add_parser("pull", help="download a catalog model or hf:OWNER/NAME:QUANT, verified")
    p.add_argument("model", help="catalog id, hf:OWNER/NAME/FILE.gguf or hf:OWNER/NAME:QUANT")
    p.add_argument("--no-plan", action="store_true", help="skip reading the remote header first")
    _add_plan_args(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("list", help="catalog models and GGUFs other tools downloaded")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("rm", help="delete a model tokrace downloaded (never another tool's files)")
    p.add_argument("model")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("search", help="search the Hugging Face Hub for GGUF repos")
    p.add_argument("text")
    p.add_argument("--limit", type=int, default=10, help="repos to show (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="GGUF metadata and the memory plan (no download needed)")
    p.add_argument("model", help="catalog id, hf: ref or .gguf path")
    p.add_argument("--json", action="store_true")
    _add_plan_args(p)
    p.set_defaults(func=cmd_info)


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    from tokrace.cli.common import positive_int
    from tokrace.cli.plan_cmd import add_ram_arg

    p.add_argument("--ctx", type=positive_int, default=None,
                   help="context for the plan (default: as loading uses, 4096 or the model's if smaller)")
    p.add_argument("--kv-type", default="f16", help="KV cache type: f16 (default), q8_0, q4_0, f32")
    p.add_argument("--gpus", default=None, metavar="GIB,GIB",
                   help="plan for GPUs with this much free memory in GiB (default: the GPUs found)")
    add_ram_arg(p)


# -- progress ---------------------------------------------------------------------------------------------
class ProgressPrinter:
    def __init__(self, stream: Any = None, interval_s: float | None = None) -> None:
        from tokrace.model_registry.transfer import TransferMeter

        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.tty else 5.0)
        self.meter = TransferMeter()
        self._shown = 0.0

    def __call__(self, done: int, total: int, what: str) -> None:
        status = self.meter.update(done, total, what)
        now = time.monotonic()
        if now - self._shown < self.interval_s and done < total:
            return
        self._shown = now
        pct = f"{100 * status.fraction:5.1f}% "
        if self.tty:
            width = 24
            fill = int(width * status.fraction)
            self.stream.write(f"\r\x1b[2K[{'#' * fill}{'.' * (width - fill)}] {pct}{status.line()}")
        else:
            self.stream.write(f"{pct}{status.line()}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- plan -------------------------------------------------------------------------------------------------
def _gpu_free(spec: str | None) -> list[int]:
    """Free bytes per GPU: ``--gpus`` as given (GiB, parsed as ``tokrace plan`` does; the split planner
    refuses a size of 0), else the GPUs NVML finds (none: CPU only)."""
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.backends.split_plan import GIB
    from tokrace.cli.plan_cmd import parse_gpus

    if spec:
        return [int(s * GIB) for s in parse_gpus(spec)]
    return [g.vram_total_bytes - g.vram_used_bytes for g in detect_gpus()]


def plan_lines(info: Any, args: argparse.Namespace) -> tuple[Any, str]:
    """The memory plan and the fit: the split planner's, built as ``tokrace plan`` builds it (same
    default context, same RAM check, same words): one answer to one question."""
    from tokrace.backends.placement import fit_verdict, plan_for_info
    from tokrace.backends.split_plan import GIB, simulated_gpus
    from tokrace.cli.plan_cmd import host_ram
    from tokrace.model_registry.memory_plan import KV_TYPE_BYTES, check_shape, plan_memory
    from tokrace.model_registry.units import format_gib

    check_shape(info, info.name or "the model")
    if args.kv_type not in KV_TYPE_BYTES:
        raise TokraceError(f"unknown KV cache type {args.kv_type!r}; use one of {', '.join(KV_TYPE_BYTES)}",
                           kind="usage")
    free = _gpu_free(args.gpus)
    split = plan_for_info(info, simulated_gpus([f / GIB for f in free]), n_ctx=args.ctx,
                          host_free_bytes=host_ram(args.ram), kv_element_bytes=KV_TYPE_BYTES[args.kv_type])
    plan = plan_memory(info, split.n_ctx, args.kv_type)
    have = f"; GPUs with {' + '.join(format_gib(f) for f in free)} free" if free else ""
    return plan, f"{plan.line()}{have} → {fit_verdict(split)}"


# -- commands ---------------------------------------------------------------------------------------------
def cmd_pull(args: argparse.Namespace) -> int:
    from tokrace.model_registry.catalog import load_catalog
    from tokrace.model_registry.hf_download import pull_hf
    from tokrace.model_registry.hub import parse_hf_ref
    from tokrace.model_registry.remote_header import read_hf_ref_info
    from tokrace.model_registry.resolve import fetch_entry

    ref = args.model.strip()
    hf = parse_hf_ref(ref) if ref.startswith("hf:") else None
    entry = None if hf else load_catalog().get(ref)
    if entry is not None:
        hf = entry.hf_ref()
    if hf is not None and not args.no_plan:
        _, fit = plan_lines(read_hf_ref_info(hf), args)
        print(f"{ref}: {fit}", file=sys.stderr)
    printer = ProgressPrinter()
    try:
        if entry is not None:
            path = fetch_entry(entry, printer).path
        else:
            assert hf is not None
            path = pull_hf(hf, progress=printer).path
    except KeyboardInterrupt:
        printer.finish()
        print("tokrace: stopped; run the same pull again to resume where it stopped", file=sys.stderr)
        return 130
    printer.finish()
    print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tokrace.model_registry.listing import catalog_problems, list_models

    rows = list_models()
    for problem in catalog_problems():  # a bad user catalog is skipped, not fatal: say so
        print(f"tokrace: warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        size = format_bytes(r["size"]) if r["size"] else "?"
        state = "✓" if r["downloaded"] else " "
        params = format_params(r["params"]) if r["params"] else ""
        print(f"{state} {r['id']:<{width}}  {params:>6}  {size:>10}  {r['where']}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from tokrace.model_registry.catalog import HfSource, PypiSource, load_catalog
    from tokrace.model_registry.hf_download import remove_pull
    from tokrace.model_registry.hub import parse_hf_ref
    from tokrace.model_registry.store import forget_pull, load_pulls

    ref = args.model.strip()
    entry = None if ref.startswith("hf:") else load_catalog().find(ref)
    if entry is not None and isinstance(entry.source, PypiSource):
        path = entry.source.model.target_path()
        marker = path.with_name(path.name + ".verified")
        if not path.exists():
            raise TokraceError(f"{entry.id} is not downloaded; nothing to delete", kind="usage")
        path.unlink()
        marker.unlink(missing_ok=True)
        print(f"deleted {path}")
        return 0
    key = str(parse_hf_ref(ref)) if ref.startswith("hf:") else None
    if entry is not None and isinstance(entry.source, HfSource):
        key = str(entry.source.ref())
    pulls = load_pulls()
    ids = {ref} | ({entry.id} if entry else set())
    match = [k for k, p in pulls.items() if k == key or (p.model_id is not None and p.model_id in ids)]
    if not match:
        if entry is not None:
            raise TokraceError(f"{entry.id} was not downloaded by tokrace; nothing to delete", kind="usage")
        raise TokraceError(
            f"tokrace did not download {ref!r}, so it will not delete it; remove it with the tool that did",
            kind="usage",
        )
    for k in match:
        pull = forget_pull(k)
        assert pull is not None
        deleted, kept = remove_pull(pull)
        for p in deleted:
            print(f"deleted {p}")
        for p in kept:
            print(f"kept {p} (it was in the Hugging Face cache before tokrace pulled it)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tokrace.model_registry.search import search_hub

    results = search_hub(args.text, limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
        return 0
    if not results:
        print(f"no GGUF repos match {args.text!r}", file=sys.stderr)
        return 0
    for r in results:
        print(f"{r.repo_id}  ({r.downloads:,} downloads{', gated' if r.gated else ''})")
        for q in r.quants:
            shards = f" in {q.files} files" if q.files > 1 else ""
            print(f"    hf:{r.repo_id}:{q.quant:<10} {format_bytes(q.size):>10}{shards}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from tokrace.model_registry.model_info import info_dict, model_info

    mi = model_info(args.model)
    info = mi.info
    plan, fit = plan_lines(info, args)
    if args.json:
        out = {"model": args.model, "where": mi.where, "remote": mi.remote, **info_dict(info),
               "kv_bytes_per_token": plan.kv_bytes_per_token, "plan": plan.to_dict(), "fit": fit}
        print(json.dumps(out, indent=1))
        return 0
    for warning in info.warnings:  # estimated sizes, or a file without its tensor data
        print(f"tokrace: warning: {warning}", file=sys.stderr)
    how = "remote header, nothing downloaded" if mi.remote else "local file"
    print(f"{info.name or args.model} · {info.architecture} · {format_params(info.n_params)} params"
          f" · {info.quantization} · {format_bytes(info.tensors_bytes)}  ({how}: {mi.where})")
    print(f"layers {info.n_layers} · heads {info.n_head} · KV heads {info.n_head_kv} · head dim"
          f" {info.head_dim} · embedding {info.n_embd} · vocab {info.n_vocab:,} · trained context"
          f" {info.n_ctx_train}")
    if info.layer_bytes:
        avg = sum(info.layer_bytes) / len(info.layer_bytes)
        print(f"tensors: {format_bytes(avg)} per layer × {info.n_layers}"
              f" + {format_bytes(info.non_layer_bytes)} outside the layers (embeddings, output head, norms)")
    print(f"KV cache: {plan.kv_bytes_per_token:,} bytes/token ({plan.kv_type},"
          f" {format_bytes(plan.kv_bytes_per_token)}/token)")
    print(f"chat template: {'in the file' if info.chat_template else 'none in the file'}")
    print(fit)
    return 0
