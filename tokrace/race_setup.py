"""Setting up a race of real models: resolve both, check memory, pick the schedule, place, load; and
recording each lane's reply afterwards. Part of the application layer: lanes are resolved and placed
through ``tokrace.session`` like every other load.

Shared by ``tokrace race`` and the TUI's race screen so both make the same decisions:

1. resolve each model and draft, and place it (headers only, nothing loaded): ``strict`` (headless)
   stops the race here when any lane or draft is bad, before anything runs; otherwise (the TUI) each
   bad lane keeps its one-line error for the screen to show;
2. memory guard from the GGUF headers (weights + KV + compute at the context used);
3. schedule: the user's choice, else ``default_mode``; simultaneous that cannot fit becomes fair with
   load/unload (and a note says so);
4. placement: simultaneous on one device splits the CPU threads; with two GPUs each lane gets its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import psutil

from tokrace.backends.base import Backend, GenerationParams
from tokrace.backends.device_telemetry import GpuSample
from tokrace.backends.placement import PlacementRequest, ceiling_tok_s
from tokrace.backends.race import RaceMode, default_mode, split_threads
from tokrace.backends.race_lane import LABELS, Lane, LaneResult
from tokrace.backends.race_memory import MemoryGuard, memory_guard
from tokrace.load import (
    DraftSpec,
    LoadSpec,
    PreparedModel,
    RemotePrepared,
    RemoteSpec,
    ResolvedSpec,
    place_resolved,
    resolve,
)
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.transfer import ProgressFn
from tokrace.session import Session, record_reply


@dataclass(slots=True)
class RacePlan:
    lanes: list[Lane]
    mode: RaceMode
    shared_device: bool
    load_in_turn: bool
    guard: MemoryGuard | None
    threads_per_lane: int
    notes: list[str] = field(default_factory=list)
    """Decisions the user should see (mode changed by the memory guard, threads split…)."""
    separate_machines: bool = False
    """The lanes run on different machines (a remote server and this one, or two servers)."""

    def describe(self) -> str:
        if self.mode == "fair":
            how = ("fair: one after the other, each with the whole machine"
                   f" ({threads_label(self.threads_per_lane)})")
            if self.load_in_turn:
                how += ", loading each lane in turn"
        elif self.separate_machines:
            how = "simultaneous: each lane on its own machine"
        elif self.shared_device:
            how = f"simultaneous on one device: {threads_label(self.threads_per_lane)} per lane"
        else:
            how = "simultaneous: each lane on its own GPU"
        return how


def threads_label(n: int) -> str:
    return "1 thread" if n == 1 else f"{n} threads"


def resolve_lane(label: str, ref: str, progress: ProgressFn | None = None, *,
                 draft: str | None = None, draft_k: int | None = None, base: LoadSpec | None = None,
                 ) -> tuple[Lane, ResolvedSpec | RemoteSpec | None]:
    """Resolve ``ref`` (and its ``draft``) to files and size its memory need; errors stay on the lane
    as one line (the other lane still races). ``base`` carries the load settings every lane shares
    (flash attention, batch sizes)."""
    lane = Lane(label=label, ref=ref)
    try:
        lane_draft = DraftSpec(ref=draft, k=draft_k if draft else None)
        spec = replace(base or LoadSpec(), model=ref, draft=lane_draft)
        found = resolve(spec, progress=progress)
    except TokraceError as err:
        lane.load_error = str(err)
        return lane, None
    lane.model_id = found.model_id
    # A server holds its model: no memory needed here (None).
    lane.need_bytes = found.need_bytes()
    return lane, found


def plan_race(
    refs: Sequence[str],
    *,
    mode: RaceMode | None,
    threads: int | None,
    request: PlacementRequest,
    gpus: Sequence[GpuSample],
    progress: ProgressFn | None = None,
    ram_available: int | None = None,
    drafts: Sequence[str | None] = (None, None),
    draft_k: int | None = None,
    strict: bool = False,
    reuse: Session | None = None,
    base: LoadSpec | None = None,
    system: str | None = None,
) -> RacePlan:
    """Everything before loading. Raises ``TokraceError`` when no lane can race at all, and with
    ``strict`` when any lane (its model, its draft or its placement) is bad: one line naming each.

    ``drafts[i]`` gives lane i a draft model (speculative decoding), e.g. to race a model against
    itself with a draft: ``tokrace race M M --draft-b D``.

    ``base``: the load settings both lanes share (flash attention, batch sizes), e.g.
    ``LoadSpec.from_settings(settings)``; its model, threads, placement and draft are the race's own.

    ``reuse``: the chat's loaded model. A lane that would load the very same file with the very same
    settings (no draft) races on it instead of loading a second copy; the lane never unloads it."""
    resolved = [resolve_lane(label, ref, progress, draft=drafts[i] if i < len(drafts) else None,
                             draft_k=draft_k, base=base)
                for i, (label, ref) in enumerate(zip(LABELS, refs, strict=True))]
    lanes = [lane for lane, _ in resolved]
    for lane in lanes:
        lane.system = system  # the same system prompt for both: same work each turn
    if all(lane.load_error for lane in lanes):
        raise TokraceError("; ".join(f"lane {lane.label}: {lane.load_error}" for lane in lanes), kind="race")
    notes: list[str] = []
    needs = [lane.need_bytes for lane in lanes if lane.need_bytes is not None]
    free_ram = psutil.virtual_memory().available if ram_available is None else ram_available
    guard = memory_guard(needs, ram_available=free_ram,
                         gpu_free=[g.vram_total_bytes - g.vram_used_bytes for g in gpus])
    machines = [found.machine for _, found in resolved if found is not None]
    separate = len(machines) == 2 and len(set(machines)) == 2
    chosen = mode or ("simultaneous" if separate else default_mode(len(gpus)))
    for lane, found in resolved:
        if found is not None and found.server is not None:
            notes.append(f"lane {lane.label} runs on the server at {found.server}")
    load_in_turn = len(needs) == 2 and not guard.fits_together
    if load_in_turn:
        notes.append(guard.line())
        if chosen == "simultaneous":
            notes.append("simultaneous needs both models resident: racing fair instead")
        chosen = "fair"
    shared = chosen == "simultaneous" and len(gpus) < 2 and not separate
    total = threads or os.cpu_count() or 1
    per_lane = split_threads(total) if shared else total
    if shared:
        notes.append(f"simultaneous on one device: {threads_label(total)} split, {per_lane} per lane")
    for index, (lane, found) in enumerate(resolved):
        if found is None:
            continue
        lane_request = request
        if chosen == "simultaneous" and not shared and not separate and request.tensor_split is None:
            # Each lane on a GPU of its own: no split across devices, lane i on GPU i.
            lane_request = PlacementRequest(n_ctx=request.n_ctx, n_gpu_layers=request.n_gpu_layers,
                                            split_mode="none", main_gpu=index)
        try:
            prepared = place_resolved(found, gpus, spec=replace(found.spec, n_threads=per_lane,
                                                                request=lane_request))
        except TokraceError as err:
            lane.load_error = str(err)
            continue
        lane.config, lane.plan, lane.factory = prepared.config, prepared.plan, prepared.build
        shared_backend = _same_load(prepared, reuse)
        if shared_backend is not None and not any(other.backend is shared_backend for other in lanes):
            lane.backend, lane.factory = shared_backend, None  # handed over loaded: never unloaded here
        if found.draft is not None:
            from tokrace.backends.speculative import DEFAULT_K  # lazily: it loads llama.cpp

            lane.draft = found.draft.model_id
            lane.draft_k = draft_k or DEFAULT_K
    if strict:
        check_lanes(lanes)
    return RacePlan(lanes, chosen, shared, load_in_turn, guard, per_lane, notes,
                    separate_machines=separate and chosen == "simultaneous")


def _same_load(prepared: PreparedModel | RemotePrepared, reuse: Session | None) -> Backend | None:
    """``reuse``'s backend when ``prepared`` would load the same file with the same settings (placement,
    context, threads, template) and neither drafts; else ``None``."""
    if reuse is None or reuse.config is None or not prepared.shareable:
        return None
    if reuse.backend.capabilities.draft is not None:
        return None
    threads = prepared.config.n_threads or os.cpu_count() or 1
    same = replace(prepared.config, n_threads=None) == replace(reuse.config, n_threads=None)
    return reuse.backend if same and reuse.model.n_threads == threads else None


def check_lanes(lanes: Sequence[Lane]) -> None:
    """Raise one ``TokraceError`` naming every lane with an error (resolve, draft, placement or load),
    so a race with a bad lane stops before anything runs."""
    bad = [lane for lane in lanes if lane.load_error]
    if bad:
        raise TokraceError("; ".join(f"lane {lane.label}: {lane.load_error}" for lane in bad),
                           facts={"lanes": [lane.label for lane in bad]}, kind="race")


def lane_ceilings(lanes: Sequence[Lane], gpu_bandwidths: Sequence[float] | None,
                  cpu_bandwidth: float | None, n_past: int = 0) -> dict[str, float | None]:
    """Each lane's decode roofline (tok/s) for its placement, when the bandwidths are known."""
    out: dict[str, float | None] = {}
    for lane in lanes:
        out[lane.label] = (ceiling_tok_s(lane.plan, gpu_bandwidths, cpu_bandwidth, n_past)
                           if lane.plan is not None else None)
    return out


def record_race(lanes: Sequence[Lane], results: Sequence[LaneResult], *,
                sampling: GenerationParams | None = None) -> list[str]:
    """Every lane that ran goes to the speed log: one session id per race, kind="race", lane="A"/"B".

    Call it after the race, not as each lane ends: a recorder hashes the model file on a thread, which
    would steal CPU from a lane still racing. Returns the errors (one line each) of records not written.
    """
    from tokrace.speedlog import SessionRecorder
    from tokrace.speedlog.record import new_session_id

    session_id = new_session_id()
    errors: list[str] = []
    for lane, result in zip(lanes, results, strict=True):
        if not result.ran or lane.model is None or lane.config is None:
            continue
        try:
            recorder = SessionRecorder(lane.model, lane.config, kind="race", session_id=session_id,
                                       lane=lane.label, model_id=lane.model_id)
            # The draft and k recorded are the reply's own; one that failed before its first token
            # measured nothing and is not logged.
            record_reply(recorder, result.stats, sampling=sampling)
        except TokraceError as err:
            errors.append(str(err))
    return errors
