"""Sampling on a serving step: the modes a request's sampling parameters select, the kernels each mode adds over the
gathered logits, and the host time of an engine that measured its own sampler.

Split from :mod:`capsim.analytic.serving` (which re-exports every name): priced by :class:`capsim.perf.Perf` under the
step's calibration, or by the engine profile's ``sampler_s`` where it measured the mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from capsim._types import Num
from capsim.analytic.ops import Op, OpKind, head_ops
from capsim.errors import SpecError
from capsim.specs.engine import PENALTIES_KEY, EngineProfile
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan
from capsim.specs.precision import DType


class SamplingMode(StrEnum):
    """How a request picks its next token (vLLM ``SamplingParams``), as far as it changes the sampler's kernels."""

    GREEDY = "greedy"  # temperature 0: an argmax over the logits
    RANDOM = "random"  # temperature > 0, no top-k/top-p: softmax, exponential (Gumbel) noise, argmax
    TOP_K = "top-k"  # top_k > 0: the row sorted (vLLM apply_top_k_top_p), then sampled as random
    TOP_P = "top-p"  # top_p < 1: the row sorted, its cumulative sum masked, then sampled as random


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters a step's requests use: the mode and whether penalties are on.

    Priced on the device calibration by default (:func:`sampler_ops`): greedy reads the logits once (the logits
    softmax pass of ``head_ops``), random adds the exponential-noise pass, top-k / top-p add a sort of every row;
    repetition, frequency and presence penalties count each row's output tokens and rewrite its logits. An engine
    profile that measured its own sampler (engines.yaml ``sampler_s``) replaces the modes it measured.
    """

    mode: SamplingMode = SamplingMode.RANDOM
    penalties: bool = False

    NAMES = tuple(m.value for m in SamplingMode)

    @property
    def top_k_top_p(self) -> bool:
        return self.mode in (SamplingMode.TOP_K, SamplingMode.TOP_P)

    @classmethod
    def parse(cls, name: str | Sampling, field: str = "sampling") -> Sampling:
        """``greedy``, ``random`` (temperature), ``top-k``, ``top-p``, each optionally ``+penalties``; a bad name is
        an error on ``field``."""
        if isinstance(name, Sampling):
            return name
        mode, _, extra = str(name).strip().lower().partition("+")
        if mode not in cls.NAMES or extra not in ("", "penalties"):
            hint = " ('plain' was greedy or temperature sampling: name which)" if mode == "plain" else ""
            raise SpecError(field, f"unknown sampling {name!r}{hint}",
                            f"use one of {', '.join(cls.NAMES)}, optionally with +penalties")
        return cls(SamplingMode(mode), extra == "penalties")

    @classmethod
    def from_params(cls, temperature: float = 1.0, top_p: float = 1.0, top_k: float = 0, min_p: float = 0.0,
                    repetition_penalty: float = 1.0, frequency_penalty: float = 0.0,
                    presence_penalty: float = 0.0) -> Sampling:
        """The sampling a request's vLLM ``SamplingParams`` run (vllm/sampling_params.py, 0.32.0: temperature below
        1e-5 is greedy, which ignores top-k/top-p; top_k 0 or -1 and top_p 1 are off); min-p is not priced."""
        pen = repetition_penalty != 1.0 or frequency_penalty != 0.0 or presence_penalty != 0.0
        if temperature < 1e-5:  # _SAMPLING_EPS
            return cls(SamplingMode.GREEDY, pen)
        if min_p > 0:
            raise SpecError("min_p", f"min-p sampling ({min_p:g}) is not priced by capsim",
                            "replay runs without min_p")
        mode = SamplingMode.TOP_P if top_p < 1.0 else SamplingMode.TOP_K if top_k > 0 else SamplingMode.RANDOM
        return cls(mode, pen)

    @property
    def name(self) -> str:
        return self.mode.value + ("+penalties" if self.penalties else "")

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode.value, "penalties": self.penalties}


# vLLM SamplingParams' defaults (vllm/sampling_params.py, 0.32.0): temperature 1.0, top_p 1.0, top_k 0, no
# penalties: random sampling, what a request that names no sampling parameters gets.
DEFAULT_SAMPLING = Sampling()
PLAIN_SAMPLING = DEFAULT_SAMPLING  # the name callers used before the modes were told apart

# vLLM random_sample (vllm/v1/sample/ops/topk_topp_sampler.py, 0.32.0): q.exponential_() writes an fp32 row,
# probs.div_(q) reads both and writes one, argmax reads it: 5 fp32 accesses per logit (after the logits softmax).
GUMBEL_BYTES_PER_LOGIT = 5 * 4
# torch.sort of a row over 4096 elements runs CUB's segmented radix sort (aten/src/ATen/native/cuda/Sort.cu): four
# 8-bit passes over 32-bit keys, each reading and writing the keys and their int64 indices (4 x 2 x 12 bytes);
# then softmax, cumulative sum, mask and scatter back, four fp32 read+write passes (vLLM
# vllm/v1/sample/ops/topk_topp_sampler.py apply_top_k_top_p).
SORT_BYTES_PER_LOGIT = 4 * 2 * (4 + 8) + 4 * 2 * 4
# vLLM apply_penalties (vllm/model_executor/layers/utils.py): a bincount of the output tokens (one fp32 write of
# the row) and repetition, frequency and presence passes (three fp32 read+write passes).
PENALTY_BYTES_PER_LOGIT = 4 + 3 * 2 * 4


def _pass(name: str, n: Num, nbytes: float) -> Op:
    return Op(name, OpKind.ELEMENTWISE, 0.0, n * nbytes / 2, n * nbytes / 2, (n,), DType.FP32)


def sampler_ops(model: ModelSpec, rows: Num, sampling: Sampling, measured: bool = False,
                penalties_measured: bool = False) -> list[Op]:
    """Sampling kernels beyond the logits softmax, over the gathered full-vocabulary logits of ``rows``; with
    ``measured`` (the engine profile times this mode itself, :func:`sampler_host_s`) only the penalty passes, and
    none with ``penalties_measured`` too (the profile times its penalties)."""
    n = np.asarray(rows, float) * model.vocab
    ops = []
    if not measured and sampling.mode is not SamplingMode.GREEDY:
        ops.append(_pass("sample_gumbel", n, GUMBEL_BYTES_PER_LOGIT))
    if not measured and sampling.top_k_top_p:
        ops.append(_pass("sample_sort", n, SORT_BYTES_PER_LOGIT))
    if sampling.penalties and not (measured and penalties_measured):
        ops.append(_pass("sample_penalties", n, PENALTY_BYTES_PER_LOGIT))
    return ops


def sampler_host_s(engine: EngineProfile, model: ModelSpec, rows: Num, sampling: Sampling) -> Num | None:
    """Seconds of the engine's own sampler for ``rows`` rows where its profile measured ``sampling``'s mode
    (engines.yaml ``sampler_s``: per call + per logit x rows x vocabulary; 0 for no rows), else None; with penalties
    on, plus what its profile measured them to add (``sampler_s.penalties``; vLLM applies them before any mode's
    sampling, vllm/v1/sample/sampler.py 0.32.0 ``Sampler.forward``), where it did."""
    terms = engine.sampler_s.get(sampling.mode.value)
    if terms is None:
        return None
    r = np.asarray(rows, float)
    call, logit = terms
    pen = engine.sampler_s.get(PENALTIES_KEY) if sampling.penalties else None
    if pen is not None:
        call, logit = call + pen[0], logit + pen[1]
    return np.where(r > 0, call + logit * r * model.vocab, 0.0)


def logit_ops(model: ModelSpec, plan: ServePlan, rows: Num, engine: EngineProfile,
              sampling: Sampling) -> tuple[list[Op], Num]:
    """(LM head, softcap, logits softmax and generic sampler kernels for ``rows`` positions, the engine's measured
    sampler seconds or 0): a measured sampler replaces the logits softmax and the mode's generic passes."""
    host = sampler_host_s(engine, model, rows, sampling)
    pen = PENALTIES_KEY in engine.sampler_s
    keep = ("lm_head", "logit_softcap") if host is not None else ("lm_head", "logit_softcap", "logits_softmax")
    ops = [o for o in head_ops(model, rows, plan.tp, plan.dtype, logits_tokens=rows, weight_dtype=plan.weight_dtype)
           if o.name in keep]
    return ops + sampler_ops(model, rows, sampling, host is not None, pen), 0.0 if host is None else host


__all__ = ["DEFAULT_SAMPLING", "GUMBEL_BYTES_PER_LOGIT", "PENALTY_BYTES_PER_LOGIT", "PLAIN_SAMPLING", "SORT_BYTES_PER_LOGIT",
           "Sampling", "SamplingMode", "logit_ops", "sampler_host_s", "sampler_ops"]
