"""The result of a step-time prediction: one layout (floats) or many (numpy arrays), whole."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from capsim._types import Num
from capsim.analytic.memory import TrainingMemory

# The parts of a step; they add up to ``step_s``.
BREAKDOWN = ("compute_s", "recompute_s", "grad_accumulation_s", "tp_comm_s", "cp_comm_s", "ep_comm_s", "pp_comm_s", "zero_comm_s",
             "offload_s", "bubble_s", "dp_comm_s", "embedding_sync_s", "optimizer_s", "param_gather_s")
STAGE_NAMES = ("first", "middle", "last")


@dataclass(frozen=True)
class StepTime:
    """One optimizer step of a training layout on a cluster, under one calibration and framework.

    Compute and per-micro-batch communication are those of the pipeline's slowest stage (``bottleneck_stage``),
    times the micro-batches; ``bubble_s`` is the pipeline fill and drain; the rest follows the flush.
    """

    step_s: Num
    compute_s: Num  # forward + backward of the layers, embedding and LM head
    recompute_s: Num  # activation recomputation (full: the layer forward again; selective: attention's core)
    grad_accumulation_s: Num  # adding each micro-batch's gradients into the fp32 buffer (unfused frameworks)
    tp_comm_s: Num  # tensor-parallel all-reduces (or SP all-gathers/reduce-scatters) left exposed
    cp_comm_s: Num  # ring-attention KV passing not hidden behind attention
    ep_comm_s: Num  # MoE all-to-alls
    pp_comm_s: Num  # blocking pipeline sends/receives in the steady state
    zero_comm_s: Num  # ZeRO-2/3 per-micro-batch reduce-scatters and parameter gathers left exposed
    offload_s: Num  # CPU activation offloading's copies not hidden behind the layers' compute
    bubble_s: Num  # pipeline fill and drain
    dp_comm_s: Num  # gradient reduction after the flush, the part not hidden behind backward
    embedding_sync_s: Num  # tied-embedding gradient all-reduce between first and last stage
    optimizer_s: Num  # Adam over the local shard (memory bound)
    param_gather_s: Num  # post-step all-gather of sharded parameters, the part not overlapped
    dp_total_s: Num  # the whole gradient reduction, hidden or not
    bottleneck_stage: Num  # 0 first, 1 middle, 2 last
    micro_batches: Num
    num_gpus: Num
    tokens_per_step: Num
    model_flops: Num  # per step, model FLOPs (6N + attention, Megatron's full-square count)
    hw_flops: Num  # per step, including recomputation
    peak_flops_per_s: float  # per GPU, the calibration's peak in the compute format
    memory: TrainingMemory
    feasible: Any  # bool or bool array
    reason: Any  # why not feasible ("" when it is)
    calibration: str
    framework: str
    power_w: float  # accelerator TDP per GPU
    price_usd_per_gpu_hour: float  # NaN where unknown
    train_tokens: float  # tokens to train for the time/energy/cost totals (NaN: not asked)

    @property
    def breakdown(self) -> dict[str, Num]:
        return {k: getattr(self, k) for k in BREAKDOWN}

    @property
    def dp_hidden_s(self) -> Num:
        """Gradient reduction hidden behind the backward pass (or absorbed by pipeline slack)."""
        return np.maximum(self.dp_total_s - self.dp_comm_s, 0.0)

    @property
    def tokens_per_s(self) -> Num:
        return self.tokens_per_step / self.step_s

    @property
    def tflops_per_gpu_model(self) -> Num:
        return self.model_flops / (self.step_s * self.num_gpus) / 1e12

    @property
    def tflops_per_gpu_hw(self) -> Num:
        return self.hw_flops / (self.step_s * self.num_gpus) / 1e12

    @property
    def mfu(self) -> Num:
        """Model FLOPs utilisation (Chowdhery et al. 2022, PaLM, Appendix B)."""
        return self.tflops_per_gpu_model * 1e12 / self.peak_flops_per_s

    @property
    def hfu(self) -> Num:
        """Hardware FLOPs utilisation: recomputation counted."""
        return self.tflops_per_gpu_hw * 1e12 / self.peak_flops_per_s

    @property
    def memory_per_gpu_bytes(self) -> Num:
        return self.memory.total_bytes

    @property
    def energy_per_step_j(self) -> Num:
        """Accelerator board energy at TDP; excludes host CPUs, memory, NICs, switches, storage and cooling (PUE)."""
        return self.step_s * self.num_gpus * self.power_w

    @property
    def train_time_s(self) -> Num:
        return self.train_tokens / self.tokens_per_s

    @property
    def train_energy_j(self) -> Num:
        return self.train_time_s * self.num_gpus * self.power_w

    @property
    def train_cost_usd(self) -> Num:
        return self.train_time_s / 3600.0 * self.num_gpus * self.price_usd_per_gpu_hour

    def to_dict(self) -> dict[str, Any]:
        skip = {"memory"}
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        for name in ("tokens_per_s", "tflops_per_gpu_model", "tflops_per_gpu_hw", "mfu", "hfu", "dp_hidden_s",
                     "memory_per_gpu_bytes", "energy_per_step_j", "train_time_s", "train_energy_j", "train_cost_usd"):
            out[name] = getattr(self, name)
        out["breakdown"] = self.breakdown
        out["bottleneck_stage"] = _names(self.bottleneck_stage)
        out["memory"] = self.memory.to_dict()
        return _plain(out)


def _names(codes: Num) -> Any:
    arr = np.asarray(codes)
    if arr.ndim == 0:
        return STAGE_NAMES[int(arr)]
    return [STAGE_NAMES[int(c)] for c in arr]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["BREAKDOWN", "StepTime"]
