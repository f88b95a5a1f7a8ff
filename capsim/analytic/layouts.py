"""Training layouts as a struct of numpy arrays, so one call prices thousands of plans (vectorised sweeps)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from capsim.specs.model import ModelSpec
from capsim.specs.plans import Recompute, Schedule, TrainPlan

SCHEDULE_CODES = {Schedule.GPIPE: 0, Schedule.ONE_F_ONE_B: 1, Schedule.INTERLEAVED: 2}


@dataclass(frozen=True)
class Layouts:
    """N training layouts of one model; field i of every array belongs to layout i."""

    dp: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    v: np.ndarray  # model chunks per pipeline stage (pp_interleave)
    cp: np.ndarray
    ep: np.ndarray
    micro_batch: np.ndarray
    global_batch: np.ndarray
    seq_len: np.ndarray
    zero_stage: np.ndarray
    distributed_optimizer: np.ndarray  # bool
    sp: np.ndarray  # bool: sequence parallelism
    recompute: np.ndarray  # 0 none, 1 selective, 2 full (Recompute.code)
    schedule: np.ndarray  # 0 GPipe, 1 1F1B, 2 interleaved 1F1B
    first_stage_layers: np.ndarray  # layers on the first pipeline stage
    last_stage_layers: np.ndarray  # layers on the last pipeline stage

    def __len__(self) -> int:
        return int(np.size(self.dp))

    @property
    def num_gpus(self) -> np.ndarray:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def micro_batches(self) -> np.ndarray:
        return self.global_batch // (self.dp * self.micro_batch)

    @classmethod
    def build(cls, model: ModelSpec, **arrays: object) -> Layouts:
        """Broadcast keyword arrays (any subset of the fields; the rest take TrainPlan's defaults)."""
        defaults = {"dp": 1, "tp": 1, "pp": 1, "v": 1, "cp": 1, "ep": 1, "micro_batch": 1, "global_batch": 1,
                    "seq_len": 2048, "zero_stage": 0, "distributed_optimizer": False, "sp": False, "recompute": 0,
                    "schedule": None, "first_stage_layers": None, "last_stage_layers": None}
        unknown = set(arrays) - set(defaults)
        if unknown:
            raise TypeError(f"unknown layout fields: {sorted(unknown)}")
        values = {**defaults, **arrays}
        if values["schedule"] is None:
            values["schedule"] = np.where(np.asarray(values["v"]) > 1, 2, 1)
        layers = model.total_layers
        for key in ("first_stage_layers", "last_stage_layers"):
            if values[key] is None:
                values[key] = layers // np.asarray(values["pp"])
        names = [f.name for f in fields(cls)]
        arrays_b = np.broadcast_arrays(*(np.atleast_1d(values[n]) for n in names))
        out = {n: np.array(a, dtype=bool if n in ("sp", "distributed_optimizer") else np.int64)
               for n, a in zip(names, arrays_b, strict=True)}
        return cls(**out)

    @classmethod
    def from_plans(cls, model: ModelSpec, plans: Sequence[TrainPlan]) -> Layouts:
        def col(f):  # noqa: ANN001, ANN202
            return np.array([f(p) for p in plans])
        layers = model.total_layers
        return cls.build(
            model, dp=col(lambda p: p.dp), tp=col(lambda p: p.tp), pp=col(lambda p: p.pp),
            v=col(lambda p: p.pp_interleave), cp=col(lambda p: p.cp), ep=col(lambda p: p.ep),
            micro_batch=col(lambda p: p.micro_batch), global_batch=col(lambda p: p.global_batch),
            seq_len=col(lambda p: p.seq_len), zero_stage=col(lambda p: p.zero_stage),
            distributed_optimizer=col(lambda p: p.distributed_optimizer), sp=col(lambda p: p.sequence_parallel),
            recompute=col(lambda p: p.recompute.code), schedule=col(lambda p: SCHEDULE_CODES[p.schedule]),
            first_stage_layers=col(lambda p: p.stage_layers(layers)[0]),
            last_stage_layers=col(lambda p: p.stage_layers(layers)[-1]))

    def plan(self, i: int, precision: object = None) -> TrainPlan:
        """Layout ``i`` as a TrainPlan (even layer split)."""
        schedule = {v: k for k, v in SCHEDULE_CODES.items()}[int(self.schedule[i])]
        kwargs = dict(dp=int(self.dp[i]), tp=int(self.tp[i]), pp=int(self.pp[i]), pp_interleave=int(self.v[i]),
                      cp=int(self.cp[i]), ep=int(self.ep[i]), micro_batch=int(self.micro_batch[i]),
                      global_batch=int(self.global_batch[i]), seq_len=int(self.seq_len[i]),
                      zero_stage=int(self.zero_stage[i]), distributed_optimizer=bool(self.distributed_optimizer[i]),
                      sequence_parallel=bool(self.sp[i]),
                      recompute=list(Recompute)[int(self.recompute[i])], schedule=schedule)
        if precision is not None:
            kwargs["precision"] = precision
        return TrainPlan(**kwargs)

    def take(self, index: np.ndarray) -> Layouts:
        return Layouts(**{f.name: getattr(self, f.name)[index] for f in fields(self)})
