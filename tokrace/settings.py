"""Every load, generation and UI knob, declared once.

``Settings`` is the single definition: each field carries its CLI flag(s), argparse group, help text, F2
form label and parser (``setting_values``) in one ``Knob``. From it come the command-line options
(``settings_args.add_settings_args``), the F2 form (``tui/screens/settings_screen.py``) and
``settings.toml`` in tokrace's config dir (``settings_file.load_settings`` / ``save_settings``).
Precedence for one run: built-in defaults < the file < the flags given on the command line; the file
only changes when the user changes a setting in the app.

``None`` in a field means "not set": the split planner (context, GPU placement), llama.cpp (threads:
one per physical core, seed: random; batch sizes: llama.cpp's) or the app (model: the embedded
default; theme: Textual's) chooses.

Every bad value is one line in the words of the interface it came from: ``--ctx`` on the command line,
"context (tokens)" in the F2 form, ``n_ctx`` in the file (with the file's path and what to do).
"""

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tokrace.backends.base import (
    CACHE_TYPES,
    DEFAULT_N_BATCH,
    DEFAULT_N_UBATCH,
    FLASH_ATTN_CHOICES,
    MAX_DRAFT_K,
    CacheType,
    FlashAttn,
    GenerationParams,
    SplitMode,
)
from tokrace.model_registry.errors import TokraceError
from tokrace.setting_values import (
    Parser,
    boolean,
    choice,
    fraction,
    number,
    split_fractions,
    text,
    thread_count,
    whole_number,
)

if TYPE_CHECKING:
    from tokrace.backends.placement import PlacementRequest

_GEN = GenerationParams()


# --- the definition ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Knob:
    """How one setting appears in every interface; attached to its ``Settings`` field.

    ``flags``: the CLI options, long one first (``()``: no flag, file and app only). ``group``: a key of
    ``GROUP_TITLES`` (``None``: the parser's own options). ``argparse_parses``: argparse checks the value
    itself (a bad one is argparse's usage + error); ``False`` keeps the raw text and ``settings_from_args``
    refuses it in one line (``--tensor-split '0,0': ...``). ``form_row``: the F2 form row showing it
    (``None``: not in the form); ``placeholder``: what an empty form field means, may use
    ``{n_ctx_train}`` and ``{n_ctx_default}`` (the context an empty field gives); ``form_choices``:
    (value, label) pairs for a select, ``""`` = not set.
    """

    label: str
    parse: Parser
    flags: tuple[str, ...] = ()
    group: str | None = None
    help: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    argparse_parses: bool = True
    flag_parse: Parser | None = None
    """A stricter parser for the command-line flag only (``--threads`` above this machine's CPU threads
    is refused for the run, while a ``settings.toml`` written on a bigger machine still loads)."""
    form_row: int | None = None
    placeholder: str = ""
    form_choices: tuple[tuple[str, str], ...] = ()

    @property
    def dest(self) -> str | None:
        """The argparse attribute name (``--gpu-layers`` → ``gpu_layers``), ``None`` without a flag."""
        return self.flags[0].lstrip("-").replace("-", "_") if self.flags else None


SPLIT_MODES: tuple[SplitMode, ...] = ("none", "layer", "row")

ContextPolicy = Literal["rolling", "middle", "stop"]
CONTEXT_POLICIES: tuple[ContextPolicy, ...] = ("rolling", "middle", "stop")
"""What a chat does when its history no longer fits the context (``tokrace.context``). Default rolling:
a chat kept open all day must never dead-end, and the next reply depends most on the latest turns; the
system prompt is always kept and the app says how many turns were dropped."""


class Settings(BaseModel):
    """Everything a user can set; see the module docstring. Frozen: change with ``updated``.

    Units: ``n_ctx`` and ``max_tokens`` in tokens, ``n_threads`` in CPU threads, ``n_gpu_layers`` in layers
    (-1 = all, the output head counted), ``tensor_split`` in relative fractions per GPU (any scale),
    ``main_gpu`` a GPU index, ``price_per_hour`` in USD per hour, ``draft_k`` in tokens per verification
    step; ``temperature`` is unitless (0 = greedy).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    model: Annotated[str | None, Knob(
        "model", text("a .gguf path or a catalog id"), flags=("--model", "-m"), metavar="M",
        help="a .gguf path or a catalog id (default: the embedded SmolLM2-135M-Instruct)",
    )] = None
    max_tokens: Annotated[int, Knob(
        "max tokens", whole_number(1), flags=("--max-tokens", "-n"), group="generation",
        help=f"most tokens to generate per reply (default: {_GEN.max_tokens})", form_row=3,
    )] = _GEN.max_tokens
    temperature: Annotated[float, Knob(
        "temperature", number(0), flags=("--temperature", "--temp"), group="generation",
        help=f"0 = greedy (default: {_GEN.temperature:g})", form_row=2,
    )] = _GEN.temperature
    seed: Annotated[int | None, Knob(
        "seed", whole_number(), flags=("--seed",), group="generation",
        help="sampling seed (default: random)", form_row=3, placeholder="random",
    )] = None
    top_k: Annotated[int, Knob(
        "top-k (0 = off)", whole_number(0), flags=("--top-k",), group="generation", metavar="K",
        help=f"sample from the K likeliest tokens only; 0 = no limit (default: {_GEN.top_k})", form_row=2,
    )] = _GEN.top_k
    top_p: Annotated[float, Knob(
        "top-p", fraction, flags=("--top-p",), group="generation", metavar="P",
        help=f"nucleus sampling: the likeliest tokens up to probability P; 1 = off (default: {_GEN.top_p:g})",
        form_row=2,
    )] = _GEN.top_p
    min_p: Annotated[float, Knob(
        "min-p", fraction, flags=("--min-p",), group="generation", metavar="P",
        help=f"drop tokens below P × the top token's probability; 0 = off (default: {_GEN.min_p:g})",
        form_row=2,
    )] = _GEN.min_p
    repeat_penalty: Annotated[float, Knob(
        "repeat penalty", number(0), flags=("--repeat-penalty",), group="generation", metavar="R",
        help=f"divide repeated tokens' logits by R; 1 = off (default: {_GEN.repeat_penalty:g})",
        form_row=2,
    )] = _GEN.repeat_penalty
    system_prompt: Annotated[str | None, Knob(
        "system prompt", text("the system message's text"), flags=("--system",), group="generation",
        metavar="TEXT", help="a system message for every conversation (default: none)", form_row=4,
        placeholder="none",
    )] = None
    context_policy: Annotated[ContextPolicy, Knob(
        "context overflow", choice(CONTEXT_POLICIES), flags=("--context-policy",),
        group="generation", choices=CONTEXT_POLICIES,
        help="a chat longer than the context: rolling = drop the oldest turns, keep the system prompt; "
             "middle = also keep the first exchange; stop = refuse with a notice (default: rolling)",
        form_row=3,
        form_choices=(("rolling", "drop oldest turns"), ("middle", "drop middle turns"),
                      ("stop", "stop with a notice")),
    )] = "rolling"
    n_ctx: Annotated[int | None, Knob(
        "context (tokens)", whole_number(1), flags=("--ctx",), group="generation",
        help="context size in tokens (default: 4096, or the model's own if smaller)",
        form_row=0, placeholder="{n_ctx_default} (max {n_ctx_train})",
    )] = None
    n_threads: Annotated[int | None, Knob(
        "CPU threads", whole_number(1), flags=("--threads", "-t"), group="generation", metavar="N",
        flag_parse=thread_count,
        help="CPU threads (default: one per physical core, as llama.cpp)", form_row=0,
        placeholder="physical cores",
    )] = None
    flash_attn: Annotated[FlashAttn, Knob(
        "flash attention", choice(FLASH_ATTN_CHOICES), flags=("--flash-attn",), group="generation",
        choices=FLASH_ATTN_CHOICES,
        help="flash attention: auto (llama.cpp's default: on where the device supports it), on, off",
    )] = "auto"
    n_batch: Annotated[int | None, Knob(
        "batch (tokens)", whole_number(1), flags=("--batch",), group="generation", metavar="N",
        help=f"logical batch: most tokens per llama_decode call (default: {DEFAULT_N_BATCH}, as llama.cpp)",
    )] = None
    n_ubatch: Annotated[int | None, Knob(
        "micro-batch (tokens)", whole_number(1), flags=("--ubatch",), group="generation", metavar="N",
        help=f"physical batch: most tokens per graph evaluation (default: {DEFAULT_N_UBATCH}, as llama.cpp)",
    )] = None
    type_k: Annotated[CacheType, Knob(
        "KV cache type K", choice(CACHE_TYPES), flags=("--cache-type-k", "-ctk"), group="generation",
        choices=CACHE_TYPES, help="KV cache data type for K, as llama.cpp's -ctk (default: f16)",
    )] = "f16"
    type_v: Annotated[CacheType, Knob(
        "KV cache type V", choice(CACHE_TYPES), flags=("--cache-type-v", "-ctv"), group="generation",
        choices=CACHE_TYPES,
        help="KV cache data type for V, as llama.cpp's -ctv; a quantized one needs flash attention"
             " (default: f16)",
    )] = "f16"
    repack: Annotated[bool, Knob(
        "repack weights", boolean, flags=("--repack",), group="generation",
        help="llama.cpp's CPU weight repacking (default: on, as llama.cpp); --no-repack makes a draft's"
             " verification batch compute exactly what plain decoding does, at a speed cost",
    )] = True
    n_gpu_layers: Annotated[int | None, Knob(
        "GPU layers (-1 = all)", whole_number(-1), flags=("--gpu-layers",), group="gpu", metavar="N",
        help="layers to offload (-1 = all; default: planned)", form_row=1, placeholder="planned",
    )] = None
    tensor_split: Annotated[list[float] | None, Knob(
        "tensor split", split_fractions, flags=("--tensor-split",), group="gpu", metavar="A,B,...",
        help="fraction of the model per GPU, e.g. 1,1 (default: planned)", argparse_parses=False,
        form_row=1, placeholder="e.g. 1,1",
    )] = None
    split_mode: Annotated[SplitMode | None, Knob(
        "split mode", choice(SPLIT_MODES), flags=("--split-mode",), group="gpu", choices=SPLIT_MODES,
        help="how layers spread over GPUs (default: planned)", form_row=1,
        form_choices=(("", "planner's choice"), ("layer", "layer"), ("row", "row"),
                      ("none", "none (one GPU)")),
    )] = None
    main_gpu: Annotated[int | None, Knob(
        "main GPU", whole_number(0), flags=("--main-gpu",), group="gpu", metavar="I",
        help="the GPU for small tensors and intermediate results (default: 0)", form_row=1,
        placeholder="0",
    )] = None
    price_per_hour: Annotated[float | None, Knob(
        "price per hour ($)", number(0), flags=("--price-per-hour",), group="gpu", metavar="USD",
        help="what the hardware costs per hour: adds $ per 1K prompt/generated tokens (default: none)",
        form_row=0, placeholder="none",
    )] = None
    draft: Annotated[str | None, Knob(
        "draft model", text("a catalog id or a .gguf path"), flags=("--draft",), group="draft",
        metavar="ID|PATH",
        help="a small draft model with the same vocabulary (catalog id or .gguf path; default: none)",
    )] = None
    draft_k: Annotated[int | None, Knob(
        "draft k", whole_number(1, MAX_DRAFT_K), flags=("--draft-k",), group="draft", metavar="K",
        help=f"tokens drafted per verification step, 1 to {MAX_DRAFT_K} (default: 4, measured)",
    )] = None
    draft_p_min: Annotated[float | None, Knob(
        "draft p-min", fraction, flags=("--draft-p-min",), group="draft", metavar="P",
        help="stop drafting at a token the draft model gives less than probability P, as llama.cpp's"
             " --draft-p-min (default: 0 = always draft k)",
    )] = None
    adaptive_k: Annotated[bool, Knob(
        "adaptive k", boolean, flags=("--adaptive-k",), group="draft",
        help="shrink k while acceptance is low, grow it back while it is high (default: off)",
    )] = False
    lookup: Annotated[bool, Knob(
        "prompt lookup", boolean, flags=("--lookup",), group="draft",
        help="prompt-lookup decoding: draft by n-gram lookup in the context (no draft model; default: off)",
    )] = False
    theme: Annotated[str | None, Knob("theme", text("a Textual theme name"))] = None
    # Remote engines (a model given as http(s)://HOST:PORT/v1): file only, never a flag, so a key is not
    # visible to other users in the process list. TOKRACE_API_KEY / OPENAI_API_KEY take precedence.
    api_key: Annotated[str | None, Knob("API key", text("the server's API key"))] = Field(
        default=None, repr=False)
    request_timeout_s: Annotated[float | None, Knob("request timeout (s)", number(0.1))] = None

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: object, info: ValidationInfo) -> object:
        """Every field through its knob's parser; ``None`` or blank text = the field's default."""
        name = info.field_name
        assert name is not None
        if value is None or (isinstance(value, str) and not value.strip()):
            return cls.model_fields[name].default
        return cls.knob(name).parse(value)

    # --- metadata ----------------------------------------------------------------------------------

    @classmethod
    def knob(cls, name: str) -> Knob:
        """The ``Knob`` of field ``name`` (``KeyError`` for an unknown name)."""
        return next(m for m in cls.model_fields[name].metadata if isinstance(m, Knob))

    @classmethod
    def cli_flag(cls, name: str) -> str:
        """The setting's long CLI flag (``n_ctx`` → ``--ctx``); its file key when it has no flag."""
        flags = cls.knob(name).flags
        return flags[0] if flags else name

    @classmethod
    def form_label(cls, name: str) -> str:
        """The setting's label in the F2 form and in the app's messages (``n_ctx`` → "context (tokens)")."""
        return cls.knob(name).label

    @classmethod
    def names(cls, *, group: str | None = None, form_row: int | None = None) -> list[str]:
        """Field names in declaration order, optionally only one argparse group's or one form row's."""
        return [name for name in cls.model_fields
                if (group is None or cls.knob(name).group == group)
                and (form_row is None or cls.knob(name).form_row == form_row)]

    # --- values ------------------------------------------------------------------------------------

    def as_text(self, name: str) -> str:
        """The value as one would type it on the command line or in the form (``""`` when not set)."""
        value = getattr(self, name)
        if value is None:
            return ""
        if isinstance(value, list):
            return ",".join(f"{v:g}" for v in value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value).lower() if isinstance(value, bool) else str(value)

    def updated(self, values: Mapping[str, object], *,
                name_of: Callable[[str], str] | None = None) -> "Settings":
        """A copy with ``values`` (raw text or values) applied, validated; ``None`` or blank = default.

        A bad value raises ``TokraceError``: "<name>: <what was expected>, got <value>", the name in the
        words ``name_of`` gives (``Settings.form_label``, ``Settings.cli_flag``; default: the file key).
        """
        try:
            return type(self).model_validate({**self.model_dump(), **values})
        except ValidationError as err:
            key, message = explain(err)
            name = (name_of or str)(key) if key in type(self).model_fields else key
            raise TokraceError(f"{name}: {message}", kind="settings") from None

    def non_defaults(self) -> dict[str, Any]:
        """The fields that differ from the built-in defaults (what ``save_settings`` writes)."""
        return {name: value for name, value in self.model_dump().items()
                if value is not None and value != type(self).model_fields[name].default}

    def placement_request(self) -> "PlacementRequest":
        """Context and GPU overrides for ``placement.place`` (``None`` = the planner chooses)."""
        from tokrace.backends.placement import PlacementRequest

        return PlacementRequest(
            n_ctx=self.n_ctx, n_gpu_layers=self.n_gpu_layers,
            tensor_split=list(self.tensor_split) if self.tensor_split is not None else None,
            split_mode=self.split_mode, main_gpu=self.main_gpu,
        )

    def generation_params(self) -> GenerationParams:
        """Sampling settings for a reply (the rest at llama.cpp's defaults)."""
        return GenerationParams(max_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed,
                                top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
                                repeat_penalty=self.repeat_penalty)


def problem(err: ValidationError) -> tuple[str, str, object]:
    """The first problem of ``err``: (file key, what was expected, the input given)."""
    first = err.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
        hint = f"did you mean {close[0]}?" if close else "known: " + ", ".join(Settings.model_fields)
        return key, f"unknown setting ({hint})", first["input"]
    cause = first.get("ctx", {}).get("error")
    return key, str(cause) if isinstance(cause, ValueError) else first["msg"], first["input"]


def explain(err: ValidationError) -> tuple[str, str]:
    """The first problem of ``err`` as (file key, "<what was expected>, got <input>")."""
    key, reason, given = problem(err)
    return key, reason if key not in Settings.model_fields else f"{reason}, got {given!r}"


def changed_fields(before: Settings, after: Settings) -> dict[str, Any]:
    """The fields whose value differs between ``before`` and ``after`` (``after``'s values)."""
    old = before.model_dump()
    return {name: value for name, value in after.model_dump().items() if old[name] != value}
