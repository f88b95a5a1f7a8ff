"""Training layouts as a struct of numpy arrays, so one call prices thousands of plans (vectorised sweeps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from capsim.errors import SpecError
from capsim.specs.model import ModelSpec
from capsim.specs.pipeline_layout import LayerSplit, SplitRule, default_uneven, from_stages, megatron
from capsim.specs.plans import Recompute, Schedule, TrainPlan

SCHEDULE_CODES = {Schedule.GPIPE: 0, Schedule.ONE_F_ONE_B: 1, Schedule.INTERLEAVED: 2}
BOOL_FIELDS = ("sp", "distributed_optimizer")
# Columns derived from the split table (not given to ``build``).
SPLIT_COLUMNS = ("split", "first_stage_layers", "last_stage_layers", "middle_max_layers", "first_stage_dense",
                 "last_stage_dense", "middle_max_dense", "middle_dense")


@dataclass(frozen=True)
class Layouts:
    """N training layouts of one model; field i of every array belongs to layout i.

    Pipeline splits are kept once each in ``splits`` (a sweep holds a handful); ``split[i]`` indexes it, -1 where no
    split of the model's layers over pp x v exists. The stage columns are read from it for the vectorised terms.
    """

    dp: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    v: np.ndarray  # model chunks per pipeline stage (pp_interleave)
    cp: np.ndarray
    ep: np.ndarray
    etp: np.ndarray  # tensor-parallel width of the routed experts (tp unless stated)
    micro_batch: np.ndarray
    global_batch: np.ndarray
    seq_len: np.ndarray
    zero_stage: np.ndarray
    distributed_optimizer: np.ndarray  # bool
    sp: np.ndarray  # bool: sequence parallelism
    recompute: np.ndarray  # 0 none, 1 selective, 2 full (Recompute.code)
    schedule: np.ndarray  # 0 GPipe, 1 1F1B, 2 interleaved 1F1B
    # ZeRO/FSDP sharding group: ranks that shard the model state (a divisor of dp x cp; dp x cp when not hybrid).
    # Hybrid sharding (HSDP) replicates the shards over the dp x cp / shard groups (``replicas``).
    shard: np.ndarray
    split: np.ndarray  # index into ``splits``; -1: no split exists
    first_stage_layers: np.ndarray  # decoder layers on the first pipeline stage (with the embedding)
    last_stage_layers: np.ndarray  # decoder layers on the last pipeline stage (with the LM head and loss)
    middle_max_layers: np.ndarray  # decoder layers on the heaviest stage between them (0 when pp <= 2)
    # An MoE model's dense-FFN layers (ModelSpec.dense_layers, DeepSeek's first_k_dense_replace) on those stages,
    # and on all the middle stages together (0 for models without them).
    first_stage_dense: np.ndarray
    last_stage_dense: np.ndarray
    middle_max_dense: np.ndarray
    middle_dense: np.ndarray
    splits: tuple[LayerSplit, ...] = ()  # the distinct splits, chunk by chunk (Megatron-Core's layout)

    def __len__(self) -> int:
        return int(np.size(self.dp))

    @property
    def num_gpus(self) -> np.ndarray:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def expert_dp(self) -> np.ndarray:
        """Replicas of each expert slice: the tp x cp x dp ranks of a stage over ep x etp (Megatron-Core's expert
        data-parallel group, parallel_state.py)."""
        return np.maximum(self.tp * self.cp * self.dp // (self.ep * self.etp), 1)

    @property
    def replicas(self) -> np.ndarray:
        """Copies of each model-state shard: dp x cp / shard (1 unless hybrid sharding)."""
        return np.maximum(self.dp * self.cp // np.maximum(self.shard, 1), 1)

    @property
    def expert_shard(self) -> np.ndarray:
        """Ranks sharding each expert slice's state: its expert-data-parallel group over the replicas (the replica
        groups cut every expert-data-parallel group alike: torchtitan's ["pp", "dp_replicate", "efsdp", "ep"] sparse
        mesh, pytorch/torchtitan@b5bcd76 torchtitan/distributed/parallel_dims.py L242, fsdp.py L29)."""
        return np.maximum(self.expert_dp // self.replicas, 1)

    @property
    def micro_batches(self) -> np.ndarray:
        return self.global_batch // (self.dp * self.micro_batch)

    @classmethod
    def build(cls, model: ModelSpec, splits: LayerSplit | Sequence[LayerSplit | None] | None = None,
              **arrays: object) -> Layouts:
        """Broadcast keyword arrays (any subset of the fields; the rest take TrainPlan's defaults).

        ``splits``: one LayerSplit for every layout, one per layout (None: no split), or None: Megatron-Core's even
        split where pp x v divides the layers, elsewhere the uneven split a search prices
        (``capsim.specs.pipeline_layout.default_uneven``).
        """
        defaults = {"dp": 1, "tp": 1, "pp": 1, "v": 1, "cp": 1, "ep": 1, "etp": 0, "micro_batch": 1,
                    "global_batch": 1, "seq_len": 2048, "zero_stage": 0, "distributed_optimizer": False, "sp": False, "recompute": 0,
                    "schedule": None, "shard": 0}
        unknown = set(arrays) - set(defaults)
        if unknown:
            raise TypeError(f"unknown layout fields: {sorted(unknown)}")
        values = {**defaults, **arrays}
        if values["schedule"] is None:
            values["schedule"] = np.where(np.asarray(values["v"]) > 1, 2, 1)
        names = list(defaults)
        arrays_b = np.broadcast_arrays(*(np.atleast_1d(values[n]) for n in names))
        out = {n: np.array(a, dtype=bool if n in BOOL_FIELDS else np.int64).reshape(-1)
               for n, a in zip(names, arrays_b, strict=True)}
        out["etp"] = np.where(out["etp"] > 0, out["etp"], out["tp"])  # 0: Megatron-Core's default, etp = tp
        out["shard"] = np.where(out["shard"] > 0, out["shard"], out["dp"] * out["cp"])  # 0: the whole dp x cp
        table, ids = _split_table(model.total_layers, out["pp"], out["v"], splits)
        return cls(**out, **_split_columns(model, out["pp"], table, ids), splits=table)

    @classmethod
    def from_plans(cls, model: ModelSpec, plans: Sequence[TrainPlan]) -> Layouts:
        def col(f):  # noqa: ANN001, ANN202
            return np.array([f(p) for p in plans])
        return cls.build(
            model, splits=[p.split(model) for p in plans], dp=col(lambda p: p.dp), tp=col(lambda p: p.tp),
            pp=col(lambda p: p.pp), v=col(lambda p: p.pp_interleave), cp=col(lambda p: p.cp), ep=col(lambda p: p.ep),
            etp=col(lambda p: p.expert_tp), micro_batch=col(lambda p: p.micro_batch),
            global_batch=col(lambda p: p.global_batch),
            seq_len=col(lambda p: p.seq_len), zero_stage=col(lambda p: p.zero_stage),
            distributed_optimizer=col(lambda p: p.distributed_optimizer),
            sp=col(lambda p: bool(p.sequence_parallel)),  # None unresolved (no release: as_released): off
            recompute=col(lambda p: p.recompute.code), schedule=col(lambda p: SCHEDULE_CODES[p.schedule]),
            shard=col(lambda p: p.shard_group or 0))

    def layer_split(self, i: int) -> LayerSplit | None:
        """Layout ``i``'s split, chunk by chunk (None where none exists)."""
        k = int(self.split[i])
        return self.splits[k] if k >= 0 else None

    def plan(self, i: int, precision: object = None) -> TrainPlan:
        """Layout ``i`` as a TrainPlan, its split stated the way it was chosen (even, per stage, first/last counts,
        embedding/loss counted as layers, or a layout string)."""
        schedule = {v: k for k, v in SCHEDULE_CODES.items()}[int(self.schedule[i])]
        kwargs = dict(dp=int(self.dp[i]), tp=int(self.tp[i]), pp=int(self.pp[i]), pp_interleave=int(self.v[i]),
                      cp=int(self.cp[i]), ep=int(self.ep[i]), micro_batch=int(self.micro_batch[i]),
                      etp=None if self.etp[i] == self.tp[i] else int(self.etp[i]),
                      global_batch=int(self.global_batch[i]), seq_len=int(self.seq_len[i]),
                      zero_stage=int(self.zero_stage[i]), distributed_optimizer=bool(self.distributed_optimizer[i]),
                      sequence_parallel=bool(self.sp[i]),
                      recompute=list(Recompute)[int(self.recompute[i])], schedule=schedule,
                      shard_group=None if self.shard[i] == self.dp[i] * self.cp[i] else int(self.shard[i]))
        kwargs.update(split_options(self.layer_split(i)))
        if precision is not None:
            kwargs["precision"] = precision
        return TrainPlan(**kwargs)

    def take(self, index: np.ndarray) -> Layouts:
        return Layouts(**{f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "splits"},
                       splits=self.splits)


def split_options(split: LayerSplit | None) -> dict[str, object]:
    """The TrainPlan fields that state ``split`` the way it was chosen ({} for an even split); a layout string
    where the chosen option would not rebuild the same chunks."""
    if split is None or split.rule is SplitRule.EVEN:
        return {}
    per = max(max(row) for row in split.chunks)
    options = {SplitRule.FIRST_LAST: {"first_stage_layers": split.first, "last_stage_layers": split.last},
               SplitRule.STAGES: {"layer_split": split.stages},
               SplitRule.EMBEDDING_LOSS: {"account_for_embedding": split.chunks[0][0] < per,
                                          "account_for_loss": split.chunks[-1][-1] < per}}.get(split.rule)
    layout = {"pipeline_layout": split.layout}
    if options is None:
        return layout
    try:
        rebuilt = (megatron(split.total, split.pp, split.v, options.get("first_stage_layers"),
                            options.get("last_stage_layers"), bool(options.get("account_for_embedding")),
                            bool(options.get("account_for_loss"))) if split.rule is not SplitRule.STAGES
                   else from_stages(split.stages, split.v))
    except SpecError:
        return layout
    return options if rebuilt.chunks == split.chunks else layout


def _split_table(layers: int, pp: np.ndarray, v: np.ndarray,
                 splits: LayerSplit | Sequence[LayerSplit | None] | None) -> tuple[tuple[LayerSplit, ...], np.ndarray]:
    """(distinct splits, each layout's index into them, -1 for none)."""
    if splits is None or isinstance(splits, LayerSplit):
        pairs, inverse = np.unique(np.stack([pp, v]), axis=1, return_inverse=True)
        per_pair = [splits if splits is not None else default_uneven(layers, int(p), int(c)) for p, c in pairs.T]
        inverse = np.asarray(inverse).reshape(-1)
    else:
        per_pair, inverse = list(splits), np.arange(len(pp))
        if len(per_pair) != len(pp):
            raise TypeError(f"{len(per_pair)} splits for {len(pp)} layouts")
    table: dict[LayerSplit, int] = {}
    ids = np.array([-1 if s is None else table.setdefault(s, len(table)) for s in per_pair], np.int64)
    return tuple(table), ids[inverse]


def _stage_stats(split: LayerSplit, dense_layers: tuple[int, ...]) -> tuple[int, ...]:
    """(first, last, middle_max layers, their dense layers, dense layers on all middle stages) of one split. The
    heaviest middle stage is the one with the most layers, and of those the one with the fewest dense layers (an
    MoE layer adds the all-to-alls a dense one does not)."""
    dense = split.count_on_stages(dense_layers)
    middle = [(n, -d) for n, d in zip(split.stages[1:-1], dense[1:-1], strict=True)]
    n_mid, d_mid = max(middle, default=(0, 0))
    return (split.first, split.last, n_mid, dense[0], dense[-1] if split.pp > 1 else 0, -d_mid,
            sum(dense[1:-1]))


def _split_columns(model: ModelSpec, pp: np.ndarray, table: tuple[LayerSplit, ...], ids: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """The stage columns read from the table; where no split exists, an even share (the layout is invalid)."""
    layers = model.total_layers
    stats = np.array([_stage_stats(s, model.dense_layers) for s in table] or [(0,) * 7], np.int64)
    got = stats[np.maximum(ids, 0)]
    share = layers // np.maximum(pp, 1)
    none = ids < 0
    return {"split": ids, "first_stage_layers": np.where(none, share, got[:, 0]),
            "last_stage_layers": np.where(none, share, got[:, 1]),
            "middle_max_layers": np.where(none, np.where(pp > 2, share, 0), got[:, 2]),
            **{name: np.where(none, 0, got[:, i]) for i, name in enumerate(
                ("first_stage_dense", "last_stage_dense", "middle_max_dense", "middle_dense"), start=3)}}


__all__ = ["Layouts", "SCHEDULE_CODES", "split_options"]
