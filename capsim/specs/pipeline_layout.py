"""Which layers each pipeline stage (and each of its model chunks) holds: even, uneven, or Megatron-Core's layout.

A :class:`LayerSplit` is the matrix ``chunks[s][c]`` of decoder layers on pipeline rank ``s``, model chunk (virtual
stage) ``c``: Megatron-Core's ``layout[pp_rank][vpp_rank]`` (megatron/core/transformer/pipeline_parallel_layer_layout.py,
NVIDIA/Megatron-LM@d98e8a6). The embedding sits on chunk (0, 0) and the loss (final norm, LM head, cross-entropy) on
chunk (p-1, v-1), where Megatron-Core builds them (``pre_process`` on the first stage, ``post_process`` on the last).

The ways Megatron-Core states a split, each reproduced here with its own checks:
- even (the default): ``num_layers / pp`` per rank, ``/ v`` per chunk; it asserts that they divide
  (megatron/training/arguments.py; transformer_block.py ``get_num_layers_to_build``);
- ``--decoder-first-pipeline-num-layers`` / ``--decoder-last-pipeline-num-layers``: the rest spread evenly over the
  middle ranks, each rank's count divisible by v (transformer_config.py, "Uneven PP");
- ``--account-for-embedding-in-pipeline-split`` / ``--account-for-loss-in-pipeline-split``: the embedding (loss)
  counts as one layer, so the first (last) rank's first (last) chunk builds one decoder layer fewer;
- ``--pipeline-model-parallel-layout``: a string such as ``"Et*3|(tt|)*29,m|L"``, stages split by ``|``.
capsim adds a plain per-stage vector (``layer_split``), each stage's layers spread evenly over its chunks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from capsim.errors import SpecError, require

LAYOUT_FIELD = "plan.pipeline_layout"
LAYOUT_HELP = ("write stages split by '|' with E (embedding), t (transformer layer), L (loss); repeats as t*3 or "
               "(tt|)*2; e.g. 'Et*7|(t*8|)*14,t*7L'")


class SplitRule(StrEnum):
    """How a split was stated (Megatron-Core's option for it)."""

    EVEN = "even"  # num_layers / (pp * v) everywhere
    STAGES = "stages"  # a per-stage vector (capsim's --layer-split)
    FIRST_LAST = "first-last"  # --decoder-first/last-pipeline-num-layers
    EMBEDDING_LOSS = "embedding-loss"  # --account-for-embedding/loss-in-pipeline-split
    LAYOUT = "layout"  # --pipeline-model-parallel-layout
    FRONT_LOADED = "front-loaded"  # torch.distributed.pipelining as NeMo AutoModel splits: the first stages heavier
    MIDDLE_LOADED = "middle-loaded"  # torchtitan's generated split points of late 2024: the middle stages heavier


@dataclass(frozen=True)
class LayerSplit:
    """Decoder layers of each pipeline stage and model chunk (``chunks[stage][chunk]``)."""

    chunks: tuple[tuple[int, ...], ...]
    rule: SplitRule = SplitRule.EVEN  # how it was stated

    def __post_init__(self) -> None:
        object.__setattr__(self, "chunks", tuple(tuple(int(n) for n in row) for row in self.chunks))
        require(len(self.chunks) > 0 and len({len(r) for r in self.chunks}) == 1 and len(self.chunks[0]) > 0,
                "plan.layer_split", "every stage needs the same number (>= 1) of model chunks")
        require(all(n >= 0 for row in self.chunks for n in row), "plan.layer_split", "layer counts must be >= 0")
        object.__setattr__(self, "rule", SplitRule(self.rule))

    @property
    def pp(self) -> int:
        return len(self.chunks)

    @property
    def v(self) -> int:
        return len(self.chunks[0])

    @property
    def stages(self) -> tuple[int, ...]:
        """Decoder layers of each pipeline stage (all its chunks)."""
        return tuple(sum(row) for row in self.chunks)

    @property
    def total(self) -> int:
        return sum(self.stages)

    @property
    def first(self) -> int:
        return self.stages[0]

    @property
    def last(self) -> int:
        return self.stages[-1]

    @property
    def middle_max(self) -> int:
        """The heaviest stage between the first and the last (0 with fewer than 3 stages)."""
        return max(self.stages[1:-1], default=0)

    def count_on_chunks(self, layers: tuple[int, ...] | frozenset[int]) -> tuple[tuple[int, ...], ...]:
        """How many of the decoder layers ``layers`` (indices) each stage's chunks hold (``chunks``' shape).
        Layers fill the virtual stages in order: chunk 0 of rank 0, 1, ..., p-1, then chunk 1 of every rank, ...
        (Megatron-Core's ``get_transformer_layer_offset``, offset = vp_stage * total_virtual_chunks + pp_rank *
        num_layers_per_virtual_rank, megatron/core/transformer/transformer_layer.py L45-154, NVIDIA/Megatron-LM@
        2edffadb), so DeepSeek's first dense layers sit on the first stage's first chunk."""
        wanted, start = frozenset(layers), 0
        out = [[0] * self.v for _ in range(self.pp)]
        if not wanted:
            return tuple(tuple(row) for row in out)
        for c in range(self.v):
            for s in range(self.pp):
                n = self.chunks[s][c]
                out[s][c] = sum(1 for i in range(start, start + n) if i in wanted)
                start += n
        return tuple(tuple(row) for row in out)

    def count_on_stages(self, layers: tuple[int, ...] | frozenset[int]) -> tuple[int, ...]:
        """How many of the decoder layers ``layers`` each stage holds (all its chunks)."""
        return tuple(sum(row) for row in self.count_on_chunks(layers))

    def peak_candidates(self) -> tuple[tuple[int, int], ...]:
        """(rank, layers) of the middle stages that can hold the memory peak: those heavier than every middle stage
        before them. Earlier ranks keep at least as many micro-batches in flight (1F1B, interleaved; GPipe keeps
        the same number everywhere), so a stage no heavier than an earlier one never needs more memory."""
        out, best = [], -1
        for rank, n in enumerate(self.stages[1:-1], start=1):
            if n > best:
                out.append((rank, n))
                best = n
        return tuple(out)

    @property
    def layout(self) -> str:
        """The split as Megatron-Core's ``--pipeline-model-parallel-layout`` string (virtual stages in layer order:
        chunk 0 of every rank, then chunk 1, ...), repeated stages folded as ``(t*8|)*14``."""
        p, v = self.pp, self.v
        parts = []
        for c in range(v):
            for s in range(p):
                n = self.chunks[s][c]
                body = "" if n == 0 else ("t" if n == 1 else f"t*{n}")
                parts.append(("E" if (s, c) == (0, 0) else "") + body + ("L" if (s, c) == (p - 1, v - 1) else ""))
        return _fold(parts)

    def to_dict(self) -> dict[str, object]:
        return {"stages": list(self.stages), "chunks": [list(r) for r in self.chunks], "rule": self.rule.value,
                "layout": self.layout}


def _fold(parts: list[str]) -> str:
    """Join stage strings with '|', writing a run of k > 1 equal stages as ``(s|)*k``."""
    out, i = [], 0
    while i < len(parts):
        j = i
        while j + 1 < len(parts) and parts[j + 1] == parts[i]:
            j += 1
        run, last = j - i + 1, j == len(parts) - 1
        if run > 1:
            out.append(f"({parts[i]}|)*{run - last}," + (parts[i] if last else ""))
        else:
            out.append(parts[i] + ("" if last else "|"))
        i = j + 1
    return "".join(out)


def even(layers: int, pp: int, v: int = 1) -> LayerSplit:
    """Megatron-Core's default: num_layers / pp per rank, / v per chunk; both must divide."""
    if layers % (pp * v):
        raise SpecError("plan.pp", f"pp={pp} x pp_interleave={v} does not divide {layers} layers",
                        _uneven_fix(layers, pp, v))
    return LayerSplit(((layers // (pp * v),) * v,) * pp, SplitRule.EVEN)


def from_stages(stages: tuple[int, ...] | list[int], v: int = 1) -> LayerSplit:
    """A per-stage vector, each stage's layers spread evenly over its v chunks (each must divide by v)."""
    stages = tuple(int(n) for n in stages)
    require(len(stages) > 0 and all(n >= 0 for n in stages), "plan.layer_split",
            f"{list(stages)} must list the layers (>= 0) of every stage")
    bad = [(i, n) for i, n in enumerate(stages) if n % v]
    require(not bad, "plan.layer_split", f"stage {bad[0][0] if bad else 0}'s {bad[0][1] if bad else 0} layers do "
            f"not split into pp_interleave={v} chunks", "give each chunk's layers with --pipeline-layout "
            "(Megatron-Core's layout string), or use stage sizes divisible by v")
    return LayerSplit(tuple((n // v,) * v for n in stages), SplitRule.STAGES)


def megatron(layers: int, pp: int, v: int = 1, first: int | None = None, last: int | None = None,
             embedding: bool = False, loss: bool = False) -> LayerSplit:
    """The split Megatron-Core builds from --decoder-first/last-pipeline-num-layers or
    --account-for-embedding/loss-in-pipeline-split (transformer_config.py __post_init__ checks;
    transformer_block.py get_num_layers_to_build)."""
    if first is None and last is None and not (embedding or loss):
        return even(layers, pp, v)
    require(not ((first is not None or last is not None) and (embedding or loss)), "plan.first_stage_layers",
            "Megatron-Core does not take first/last stage layer counts together with account-for-embedding/loss",
            "use one of the two")
    if embedding or loss:
        counted = layers + embedding + loss
        if counted % pp:
            raise SpecError("plan.pp", f"{layers} layers + {int(embedding) + int(loss)} (embedding/loss counted as "
                            f"layers) = {counted} do not divide over pp={pp}", _uneven_fix(layers, pp, v))
        require((counted // pp) % v == 0, "plan.pp_interleave", f"{counted // pp} layers per stage do not "
                f"split into v={v} chunks", f"use v in {[d for d in range(1, counted // pp + 1) if (counted // pp) % d == 0]}")
        per = counted // (pp * v)
        chunks = [[per] * v for _ in range(pp)]
        chunks[0][0] -= embedding
        chunks[-1][-1] -= loss
        require(min(chunks[0][0], chunks[-1][-1]) >= 0, "plan.pp", "not enough layers in the first or last chunk")
        return LayerSplit(tuple(tuple(r) for r in chunks), SplitRule.EMBEDDING_LOSS)
    rest, middle = layers, pp
    for name, n in (("first_stage_layers", first), ("last_stage_layers", last)):
        if n is not None:
            require(n > 0 and n % v == 0, f"plan.{name}", f"{n} layers must be > 0 and divisible by v={v}")
            rest, middle = rest - n, middle - 1
    require(rest >= 0 and middle >= 0 and (rest > 0) == (middle > 0), "plan.first_stage_layers",
            f"{rest} layers left for {middle} middle stages", "leave at least one layer per middle stage")
    per = rest // middle if middle else 0
    require(middle == 0 or (rest % middle == 0 and per % v == 0), "plan.first_stage_layers",
            f"the {rest} middle layers do not split evenly over {middle} middle stages x v={v}",
            "change the first/last counts so the rest divides, or give --layer-split / --pipeline-layout")
    stages = [per] * pp
    if first is not None:
        stages[0] = first
    if last is not None:
        stages[-1] = last
    split = from_stages(stages, v)
    return LayerSplit(split.chunks, SplitRule.FIRST_LAST)


def front_loaded(layers: int, pp: int, v: int = 1) -> LayerSplit | None:
    """NeMo AutoModel's split (torch.distributed.pipelining): pp x v virtual stages, the first ``layers mod (pp v)``
    of them one layer heavier, virtual stage i on rank i mod pp as its chunk i // pp (the looped schedules);
    NVIDIA-NeMo/Automodel@8d9bfb9 nemo_automodel/components/distributed/pipelining/functional.py L66-71
    stage_ids_this_rank 'loop', L113-126 generate_hf_model_fqn_per_model_part. None where the stages outnumber the
    layers (L110-111 raises)."""
    return _looped(layers, pp, v, SplitRule.FRONT_LOADED,
                   lambda base, extra, stages: [base + (i < extra) for i in range(stages)])


def middle_loaded(layers: int, pp: int, v: int = 1) -> LayerSplit | None:
    """torchtitan's generated split (no --experimental.pipeline_parallel_split_points): pp x v virtual stages, the
    first of ``layers // (pp v)`` layers, each next one a layer heavier while ``layers mod (pp v)`` lasts, the last
    one what remains; virtual stage i on rank i mod pp (the looped schedules); pytorch/torchtitan@9dec370
    torchtitan/parallelisms/pipelining_utils.py L18-57 generate_split_points (used where the run names no split
    points, pipeline_llama.py L70-72), L102-111 stage_ids_this_rank 'loop'. None where the stages outnumber the
    layers (L35 raises)."""
    def counts(base: int, extra: int, stages: int) -> list[int]:
        inner = [base] + [base + (i <= extra) for i in range(1, stages - 1)]
        return inner + [layers - sum(inner)]
    return _looped(layers, pp, v, SplitRule.MIDDLE_LOADED, counts)


def _looped(layers: int, pp: int, v: int, rule: SplitRule,
            counts: Callable[[int, int, int], list[int]]) -> LayerSplit | None:
    """torch.distributed.pipelining's looped placement of pp x v virtual stages of ``counts(base, extra, stages)``
    layers (``divmod(layers, stages)``): virtual stage i on rank i mod pp as its chunk i // pp; None where the stages
    outnumber the layers, the even split where they divide them."""
    stages = pp * v
    if stages > layers:
        return None
    if layers % stages == 0:
        return even(layers, pp, v)
    c = counts(*divmod(layers, stages), stages)
    return LayerSplit(tuple(tuple(c[k * pp + s] for k in range(v)) for s in range(pp)), rule)


def default_uneven(layers: int, pp: int, v: int = 1) -> LayerSplit | None:
    """The split a search prices where pp x v does not divide the layers (None if no Megatron-Core option gives one).

    Megatron-Core has no automatic uneven split (it asserts divisibility), so this is what its users state:
    first the embedding and loss counted as layers, as Megatron-Bridge's Llama-3.1-405B recipe does
    (recipes/llama/h100/llama3.py, llama31_405b_pretrain_256gpu_h100_bf16_config: account_for_embedding/loss,
    NVIDIA-NeMo/Megatron-Bridge@067f987); else --decoder-first/last-pipeline-num-layers with the lightest heaviest
    stage: middle stages of ceil(L / (p v)) v layers, the rest shared by the two ends (the first one taking the
    odd chunk, since the last also runs the LM head).
    """
    if layers % (pp * v) == 0:
        return even(layers, pp, v)
    if pp == 1:
        return None
    counted = layers + 2
    if counted % pp == 0 and (counted // pp) % v == 0:
        return megatron(layers, pp, v, embedding=True, loss=True)
    return first_last_uneven(layers, pp, v)


def first_last_uneven(layers: int, pp: int, v: int = 1) -> LayerSplit | None:
    """--decoder-first/last-pipeline-num-layers with the lightest heaviest stage (``default_uneven``'s second
    choice): middle stages of ceil(L / (p v)) v layers, the rest shared by the two ends, the first one taking the
    odd chunk; None where pp < 2, the ends would get under v layers each or more than a middle stage."""
    if pp < 2 or layers % v:
        return None
    per = math.ceil(layers / (pp * v)) * v
    rest = layers - (pp - 2) * per
    if rest < 2 * v or rest > 2 * per:
        return None
    first = math.ceil(rest / (2 * v)) * v
    stages = [first] + [per] * (pp - 2) + [rest - first]
    return LayerSplit(from_stages(stages, v).chunks, SplitRule.FIRST_LAST)


def _uneven_fix(layers: int, pp: int, v: int) -> str:
    split = default_uneven(layers, pp, v) if pp > 1 else None
    divisible = [d for d in range(1, layers + 1) if layers % (d * v) == 0]
    if split is None:
        return (f"use pp in {divisible} with v={v}, or " if divisible else
                f"no pp splits {layers} layers into v={v} equal chunks: ") + \
            "place every layer with --pipeline-layout (Megatron-Core's --pipeline-model-parallel-layout)"
    how = ("--account-for-embedding-in-pipeline-split --account-for-loss-in-pipeline-split"
           if split.rule is SplitRule.EMBEDDING_LOSS else
           f"--decoder-first-pipeline-num-layers {split.first} --decoder-last-pipeline-num-layers {split.last}")
    return (f"state the uneven split as Megatron-Core does: {how}, or --layer-split "
            f"{_short(split.stages)}, or --pipeline-layout '{split.layout}'; or use pp in {divisible}")


def _short(stages: tuple[int, ...]) -> str:
    if len(stages) > 4 and len(set(stages[1:-1])) == 1:
        return f"{stages[0]},{stages[1]},...,{stages[-1]}"
    return ",".join(str(n) for n in stages)


def parse_stage_list(text: str, pp: int) -> tuple[int, ...]:
    """A --layer-split value: comma-separated counts, ``n*k`` for k stages of n, and ``...`` to repeat the count
    before it until there are pp stages (``7,8,...,7``)."""
    items, fill_at = [], None
    for raw in (x.strip() for x in str(text).split(",")):
        if raw == "...":
            require(bool(items) and fill_at is None, "--layer-split", "'...' must follow a count, once",
                    "write e.g. 7,8,...,7")
            fill_at = len(items)
            continue
        count, _, times = raw.partition("*")
        try:
            n, k = int(count), int(times or 1)
        except ValueError:
            raise SpecError("--layer-split", f"{raw!r} is not a layer count", "write e.g. 7,8,...,7 or 7,8*14,7") \
                from None
        require(n >= 0 and k > 0, "--layer-split", f"{raw!r}: counts must be >= 0 and repeats > 0")
        items.extend([n] * k)
    if fill_at is not None:
        missing = pp - len(items)
        require(missing >= 0, "--layer-split", f"{len(items)} counts already exceed pp={pp}")
        items[fill_at:fill_at] = [items[fill_at - 1]] * missing
    require(len(items) == pp, "--layer-split", f"{len(items)} stage counts given for pp={pp}",
            f"give {pp} counts, or use '...' to repeat one (e.g. 7,8,...,7)")
    return tuple(items)


_CHARS = {"E": "embedding", "L": "loss", "t": "decoder", "m": "mtp"}


def _unroll(layout: str) -> str:
    """A layout string with commas and spaces dropped, ``(...)*n`` then ``x*n`` unrolled
    (PipelineParallelLayerLayout.parse_str_to_list)."""
    text = layout.replace(",", "").replace(" ", "")
    for pattern in (r"\(([^)]+)\)\*(\d+)", r"(.)\*(\d+)"):
        text = re.sub(pattern, lambda x: x.group(1) * int(x.group(2)), text)
    return text


def layout_mtp_layers(layout: str | None) -> int:
    """MTP layers ('m') a --pipeline-model-parallel-layout string places (0 for none or no layout); Megatron-Core
    requires the count to equal --mtp-num-layers (pipeline_parallel_layer_layout.py L108-110 at core_v0.14.0)."""
    return _unroll(layout).count("m") if layout else 0


def parse_layout(layout: str, pp: int) -> LayerSplit:
    """Megatron-Core's --pipeline-model-parallel-layout string: commas dropped, ``(...)*n`` then ``x*n`` unrolled,
    stages split by ``|`` (PipelineParallelLayerLayout.parse_str_to_list); the stage count must be a multiple of
    pp, which gives v; stage i is chunk i // pp of rank i % pp."""
    require(isinstance(layout, str) and layout.strip() != "", LAYOUT_FIELD, "empty layout", LAYOUT_HELP)
    stages = _unroll(layout).split("|")
    for i, stage in enumerate(stages):
        for ch in stage:
            require(ch in _CHARS, LAYOUT_FIELD, f"unknown layer character {ch!r} in stage {i} ({stage!r})",
                    LAYOUT_HELP)
        # MTP layers ('m', priced from --mtp-num-layers: capsim.analytic.mtp) only in the last rank's last chunk,
        # after its decoder layers, with the loss (ML@core_v0.14.0 megatron/core/transformer/
        # pipeline_parallel_layer_layout.py L111-131)
        if "m" in stage:
            require(i == len(stages) - 1 and "L" in stage and "t" not in stage[stage.index("m"):], LAYOUT_FIELD,
                    f"stage {i} ({stage!r}) holds an MTP layer ('m') outside the last stage's end",
                    "Megatron-Core puts every MTP layer in the last stage, after its decoder layers, with L")
    require(len(stages) % pp == 0, LAYOUT_FIELD, f"{len(stages)} stages do not split over pp={pp}",
            f"give a multiple of {pp} stages (pp x virtual stages per rank)")
    v = len(stages) // pp
    flat = "".join(stages)
    require(flat.count("E") == 1 and flat.count("L") == 1, LAYOUT_FIELD,
            f"the embedding (E) and the loss (L) must each appear once, got {flat.count('E')} and {flat.count('L')}",
            LAYOUT_HELP)
    require(stages[0].startswith("E"), LAYOUT_FIELD, f"the first stage {stages[0]!r} must start with E",
            "Megatron-Core builds the embedding on the first pipeline stage's first chunk")
    require(stages[-1].endswith("L"), LAYOUT_FIELD, f"the last stage {stages[-1]!r} must end with L",
            "Megatron-Core computes the loss on the last pipeline stage's last chunk")
    chunks = tuple(tuple(stages[c * pp + s].count("t") for c in range(v)) for s in range(pp))
    return LayerSplit(chunks, SplitRule.LAYOUT)


__all__ = ["LayerSplit", "SplitRule", "default_uneven", "even", "first_last_uneven", "from_stages", "layout_mtp_layers", "megatron", "parse_layout",
           "parse_stage_list"]
