"""Engine-step times tabulated for the simulator, and decode runs summed in closed form.

:func:`capsim.analytic.serving.iteration_time` prices one step from the op list. The simulator needs millions of
steps, so :class:`StepTable` evaluates that same pricing once over every token count (one vectorised call) and
keeps attention as its two exact roofline branches, which are affine in the step's context:

    attention = launch + max(flops / (peak * eff(rows)), (bytes + half_bytes) / bandwidth)

(``capsim.perf.Perf.attention_s`` with ``memory_bytes_s`` = bytes / (bw * bytes / (bytes + half))). A decode
step of ``B`` sequences whose contexts sum to ``S`` is then a maximum of lines in ``S``; across a run of steps in
which the batch does not change, ``S`` grows by ``B`` per step, so the run's total time is a sum of a maximum of
lines over an integer range, summed in closed form (:func:`sum_max_lines`).
"""

from __future__ import annotations

import math

import numpy as np

from capsim.analytic.ops import head_ops
from capsim.analytic.serving import (
    comm_tier,
    engine_perf,
    graphed,
    kernels_per_step,
    layer_token_ops,
    pp_comm_s,
    tp_comm_s,
)
from capsim.errors import SpecError
from capsim.perf import Collective, Perf, curve_value
from capsim.specs.engine import EngineProfile, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan

Lines = tuple[tuple[float, float], ...]  # (intercept, slope) pairs: value(j) = max(a + b j)


def sum_max_lines(lines: Lines, lo: int, hi: int) -> float:
    """Sum over integers j in [lo, hi) of max_i (a_i + b_i j)."""
    if hi <= lo:
        return 0.0
    cuts = {lo, hi}
    for i, (a1, b1) in enumerate(lines):
        for a2, b2 in lines[i + 1:]:
            if b1 != b2:
                x = math.ceil((a2 - a1) / (b1 - b2))
                if lo < x < hi:
                    cuts.add(x)
    edges = sorted(cuts)
    total = 0.0
    for s, e in zip(edges, edges[1:], strict=False):
        mid = 0.5 * (s + e - 1)
        a, b = max(lines, key=lambda ln: ln[0] + ln[1] * mid)
        total += (e - s) * a + b * (s + e - 1) * (e - s) / 2.0
    return total


def max_lines(lines: Lines, j: float) -> float:
    return max(a + b * j for a, b in lines)


def steps_to_reach(lines: Lines, k: int, target: float) -> int:
    """The fewest steps m (1 <= m <= k) whose summed time reaches ``target``: the step in progress at ``target``
    ends after m steps (k when the run ends first)."""
    if target <= 0:
        return 1
    lo, hi = 1, k
    if sum_max_lines(lines, 0, k) < target:
        return k
    while lo < hi:  # bisection on the closed-form sum: O(log k) evaluations, no per-step loop
        mid = (lo + hi) // 2
        if sum_max_lines(lines, 0, mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


class StepTable:
    """Per-step times of one replica layout, tabulated over token counts (built once per simulation)."""

    def __init__(self, model: ModelSpec, plan: ServePlan, perf: Perf, engine: EngineProfile | str = "vllm",
                 accelerator: Accelerator | None = None, max_tokens: int | None = None) -> None:
        self.model, self.plan, self.engine = model, plan, get_engine(engine)
        self.calibration = perf.name
        self.main, self.dec = engine_perf(perf, self.engine)
        self.tier = comm_tier(plan, accelerator)
        self.layers = float(model.layers)
        top = int(max_tokens or (plan.max_batched_tokens + plan.max_batch))
        self.token_s = self._token_table(np.arange(top + 1, dtype=float))
        self.logit_s = self._logit_table(np.arange(top + 1, dtype=float))
        self._extra: dict[tuple[str, int], float] = {}
        heads = model.heads / plan.tp
        self.q_dim = heads * model.head_dim
        self.kv_dim = max(model.kv_heads / plan.tp, 1.0) * model.head_dim
        self.heads = heads
        self.act_bytes, self.kv_bytes = plan.dtype.bytes, plan.kv_cache_dtype.bytes
        self.attn_launch_s = self.main.params.attention.launch_s
        self.mem = self._affine(self.main)
        self.dec_mem = self._affine(self.dec)
        self.kernels = {(p, d): float(kernels_per_step(model, plan, p, d)) for p in (0, 1) for d in (0, 1)}

    # --- tables over token counts ------------------------------------------------------------------
    def _token_table(self, n: np.ndarray) -> np.ndarray:
        """Everything of a step that depends only on its new tokens: layers' token kernels, embedding and final
        norm, TP all-reduces and PP sends (0 for an empty step)."""
        m, p = self.model, self.plan
        layers = self.layers * self.main.ops_s(layer_token_ops(m, p, n, 1.0))
        head = [o for o in head_ops(m, n, p.tp, p.dtype, logits_tokens=0.0, weight_dtype=p.weight_dtype)
                if o.name in ("embedding", "final_norm")]
        act = p.dtype.bytes
        ar = self.main.collective_s(Collective.ALL_REDUCE, n * m.hidden * act, p.tp, self.tier)
        out = layers + self.main.ops_s(head) + (2 * m.layers + 1) * ar + pp_comm_s(self.main, m, p, n, self.tier)
        return np.where(n > 0, out, 0.0)

    def _logit_table(self, rows: np.ndarray) -> np.ndarray:
        """LM head, logits softmax and the logits gather for ``rows`` positions (0 for none)."""
        m, p = self.model, self.plan
        head = [o for o in head_ops(m, rows, p.tp, p.dtype, logits_tokens=rows, weight_dtype=p.weight_dtype)
                if o.name in ("lm_head", "logits_softmax")]
        out = self.main.ops_s(head) + tp_comm_s(self.main, m, p, 0.0 * rows, rows, self.tier)
        return np.where(rows > 0, out, 0.0)

    def _lookup(self, table: np.ndarray, kind: str, n: int) -> float:
        if n < len(table):
            return float(table[n])
        key = (kind, n)
        if key not in self._extra:
            builder = self._token_table if kind == "token" else self._logit_table
            self._extra[key] = float(builder(np.array([float(n)]))[0])
        return self._extra[key]

    @staticmethod
    def _affine(perf: Perf) -> tuple[float, float]:
        """(intercept, slope) of perf.memory_bytes_s, checked to be affine in the bytes moved."""
        x1, x2, x3 = 1.0e6, 2.0e6, 1.0e10
        t1, t2, t3 = (float(perf.memory_bytes_s(x)) for x in (x1, x2, x3))
        slope = (t2 - t1) / (x2 - x1)
        icpt = t1 - slope * x1
        if not math.isclose(icpt + slope * x3, t3, rel_tol=1e-9):
            raise SpecError("calibration", f"{perf.name}: memory time is not affine in bytes",
                            "the serving simulator's closed-form decode runs need the roofline memory model")
        return icpt, slope

    def _flop_s(self, perf: Perf, query_rows: float) -> float:
        """Seconds per attention FLOP at ``query_rows`` (perf.attention_s's compute branch)."""
        a = perf.params.attention
        eff = float(curve_value(a.forward, query_rows))
        return 1.0 / (perf.peak(self.plan.dtype) * eff)

    # --- one step ---------------------------------------------------------------------------------
    def token_time(self, n: int) -> float:
        return self._lookup(self.token_s, "token", n)

    def logit_time(self, rows: int) -> float:
        return self._lookup(self.logit_s, "logit", rows)

    def prefill_attention_s(self, tokens: int, pairs: float, kv_tokens: float) -> float:
        """One layer's prefill attention kernel (serving_layer_ops' attention op, priced as Perf prices it)."""
        if tokens <= 0:
            return 0.0
        flops = 4.0 * pairs * self.q_dim
        nbytes = 2.0 * tokens * self.q_dim * self.act_bytes + 2.0 * kv_tokens * self.kv_dim * self.kv_bytes
        icpt, slope = self.mem
        return self.attn_launch_s + max(flops * self._flop_s(self.main, tokens * self.heads), icpt + slope * nbytes)

    def decode_attention_s(self, seqs: int, kv_tokens: float) -> float:
        """One layer's decode (paged) attention kernel for ``seqs`` sequences reading ``kv_tokens`` keys."""
        if seqs <= 0:
            return 0.0
        icpt, slope = self.dec_mem
        flops = 4.0 * kv_tokens * self.q_dim
        nbytes = 2.0 * seqs * self.q_dim * self.act_bytes + 2.0 * kv_tokens * self.kv_dim * self.kv_bytes
        return self.attn_launch_s + max(flops * self._flop_s(self.dec, seqs * self.heads), icpt + slope * nbytes)

    def overhead_s(self, seqs: int) -> float:
        return self.engine.step_overhead_s + self.engine.sequence_overhead_s * seqs

    def dispatch_s(self, prefill_tokens: int, decode_seqs: int) -> float:
        """CPU dispatch time of a step's kernels outside a CUDA graph (0 when the step replays one)."""
        if bool(graphed(self.engine, prefill_tokens, decode_seqs)):
            return 0.0
        return self.kernels[(int(prefill_tokens > 0), int(decode_seqs > 0))] * self.engine.kernel_dispatch_s

    def decode_lines(self, seqs: int, kv_sum0: float) -> Lines:
        """Step time of ``seqs`` decoding sequences as lines in the step index j, when their contexts sum to
        ``kv_sum0`` before step 0 (step j reads kv_sum0 + seqs (j + 1) keys)."""
        b = float(seqs)
        base = self.token_time(seqs) + self.logit_time(seqs) + self.layers * self.attn_launch_s
        icpt, slope = self.dec_mem
        per_flop = 4.0 * self.q_dim * self._flop_s(self.dec, b * self.heads)
        per_byte = 2.0 * self.kv_dim * self.kv_bytes
        x0 = kv_sum0 + b
        oh = self.overhead_s(seqs)
        lines = [(base + self.layers * per_flop * x0 + oh, self.layers * per_flop * b),
                 (base + self.layers * (icpt + slope * (2.0 * b * self.q_dim * self.act_bytes + per_byte * x0)) + oh,
                  self.layers * slope * per_byte * b)]
        cpu = self.dispatch_s(0, seqs)
        if cpu > 0:
            lines.append((cpu + oh, 0.0))
        return tuple(lines)

    def step_s(self, prefill_tokens: int = 0, prefill_seqs: int = 0, prefill_pairs: float = 0.0,
               prefill_kv_tokens: float = 0.0, decode_seqs: int = 0, decode_kv_tokens: float = 0.0,
               logits: int | None = None) -> float:
        """One step's total seconds (equal to iteration_time(...).total_s for the same shape)."""
        rows = prefill_seqs + decode_seqs if logits is None else logits
        gpu = (self.token_time(prefill_tokens + decode_seqs) + self.logit_time(rows)
               + self.layers * (self.prefill_attention_s(prefill_tokens, prefill_pairs, prefill_kv_tokens)
                                + self.decode_attention_s(decode_seqs, decode_kv_tokens)))
        return max(gpu, self.dispatch_s(prefill_tokens, decode_seqs)) + self.overhead_s(prefill_seqs + decode_seqs)


__all__ = ["Lines", "StepTable", "max_lines", "steps_to_reach", "sum_max_lines"]
