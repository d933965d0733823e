"""What llama.cpp itself allows speculative decoding on this machine: the cost of one verification batch
of k + 1 tokens against a single-token decode, at several KV depths, and the speedup ceiling it implies.

    .venv/bin/python bench/verify_cost.py [--width 64 --layers 24 -k 8 --depth 0 100 300 --threads 2]

The pair is ``bench/speculative.py``'s (a 2-layer draft, a target of the same seed and width whose layers
past the second are inert: 100% acceptance). Each figure is the median of ``--reps`` raw ``llama_decode``
calls through llama-cpp-python's ctypes binding, no tokrace code in the timed path: the verification
batch asks logits for every position, as a verifier must. With every draft accepted a step yields k + 1
tokens for k draft decodes and one verification batch, so the ceiling is

    (k + 1) · T  ÷  (k · D + V(k+1))

with T and D the target's and the draft's single-token decode and V(k+1) the batch, all at that depth.
Compare it with ``bench/speculative.py``'s measured speedup: what lies between is tokrace's per-step cost;
what lies above the ceiling no verifier on this llama.cpp build and machine can reach.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))

import llama_cpp  # noqa: E402
from speculative import make_pair  # noqa: E402

from tokrace.backends.base import LoadConfig  # noqa: E402
from tokrace.backends.llama_cpp_backend import LlamaCppBackend  # noqa: E402
from tokrace.backends.token_batch import TokenBatch  # noqa: E402


class Decoder:
    """One loaded model and a batch of up to ``n_max`` tokens for raw ``llama_decode`` timings."""

    def __init__(self, path: Path, threads: int, flash_attn: bool, n_max: int = 64) -> None:
        self.backend = LlamaCppBackend(LoadConfig(path=str(path), n_threads=threads), flash_attn=flash_attn)
        self.backend.load()
        self.llama = self.backend.llama
        self.memory = llama_cpp.llama_get_memory(self.llama._ctx.ctx)
        self.batch = TokenBatch(n_max)

    def decode(self, n: int, all_logits: bool) -> None:
        self.batch.decode(self.llama, [65] * n, all_logits=all_logits)
        llama_cpp.llama_synchronize(self.llama._ctx.ctx)

    def median_ms(self, n: int, depth: int, reps: int) -> float:
        """Median ms of decoding ``n`` tokens (logits for all) after ``depth`` cached positions."""
        llama_cpp.llama_memory_clear(self.memory, False)
        self.llama.n_tokens = 0
        for start in range(0, depth, 32):
            self.decode(min(32, depth - start), False)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            self.decode(n, True)
            times.append(time.perf_counter() - t0)
            llama_cpp.llama_memory_seq_rm(self.memory, 0, depth, -1)  # back to the same depth
            self.llama.n_tokens = depth
        return statistics.median(times) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("-k", type=int, default=8)
    p.add_argument("--depth", type=int, nargs="+", default=[0, 100, 300])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_false")
    p.add_argument("--dir", default=str(Path.home() / ".cache" / "tokrace-bench"))
    args = p.parse_args()
    target_path, draft_path = make_pair(Path(args.dir), args.width, args.layers)
    target = Decoder(target_path, args.threads, args.flash_attn)
    draft = Decoder(draft_path, args.threads, args.flash_attn)
    k = args.k
    print(f"pair {target_path.name} / {draft_path.name}, {args.threads} threads,"
          f" flash_attn={args.flash_attn}, median of {args.reps}\n")
    print(f"| KV depth | target T ms | draft D ms | verify V{k + 1} ms | V/T | ceiling at k={k} |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for depth in args.depth:
        t = target.median_ms(1, depth, args.reps)
        d = draft.median_ms(1, depth, args.reps)
        v = target.median_ms(k + 1, depth, args.reps)
        ceiling = (k + 1) * t / (k * d + v)
        print(f"| {depth} | {t:.3f} | {d:.3f} | {v:.3f} | {v / t:.2f} | {ceiling:.2f}× |")


if __name__ == "__main__":
    main()
