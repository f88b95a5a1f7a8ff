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
    PLAIN_SAMPLING,
    Sampling,
    comm_tier,
    engine_perf,
    kernels_per_step,
    layer_token_ops,
    pp_comm_s,
    pp_sends,
    sampler_ops,
    tp_comm_s,
)
from capsim.analytic.serving_moe import kv_heads_per_gpu
from capsim.errors import SpecError
from capsim.perf import Perf, curve_value
from capsim.specs.engine import EngineProfile, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan

Lines = tuple[tuple[float, float], ...]  # (intercept, slope) pairs: value(j) = max(a + b j)
Piece = tuple[int, int, float, float]  # steps [start, end) on which line (a, b) is the maximum


def _line_sum(s: int, e: int, a: float, b: float) -> float:
    """Sum of a + b j over integers j in [s, e): (e - s) a + b (s + e - 1)(e - s) / 2."""
    return (e - s) * a + b * (s + e - 1) * (e - s) / 2.0


def envelope(lines: Lines, k: int) -> list[Piece]:
    """The upper envelope of ``lines`` over the integer steps [0, k), as pieces of one line each."""
    if len(lines) == 1 or k <= 1:
        a, b = max(lines, key=lambda ln: (ln[0], ln[1]))
        return [(0, k, a, b)]
    if len(lines) == 2:  # the common case (CUDA graphs): at most one crossing
        (a1, b1), (a2, b2) = lines
        if (a2, b2) > (a1, b1):
            a1, b1, a2, b2 = a2, b2, a1, b1  # line 1 is the maximum at step 0
        if b2 > b1:
            x = math.ceil((a1 - a2) / (b2 - b1))
            if 0 < x < k:
                return [(0, x, a1, b1), (x, k, a2, b2)]
            if x <= 0:
                return [(0, k, a2, b2)]
        return [(0, k, a1, b1)]
    cuts = {0, k}
    for i, (a1, b1) in enumerate(lines):
        for a2, b2 in lines[i + 1:]:
            if b1 != b2:
                x = math.ceil((a2 - a1) / (b1 - b2))
                if 0 < x < k:
                    cuts.add(x)
    edges = sorted(cuts)
    pieces: list[Piece] = []
    for s, e in zip(edges, edges[1:], strict=False):
        mid = 0.5 * (s + e - 1)
        a, b = max(lines, key=lambda ln: ln[0] + ln[1] * mid)
        pieces.append((s, e, a, b))
    return pieces


def pieces_sum(pieces: list[Piece], m: int | None = None) -> float:
    """Summed time of the first ``m`` steps (all when None)."""
    total = 0.0
    for s, e, a, b in pieces:
        if m is not None:
            if m <= s:
                break
            e = min(e, m)
        total += (e - s) * a + b * (s + e - 1) * (e - s) / 2.0  # _line_sum, inlined (the hot path)
    return total


def sum_max_lines(lines: Lines, lo: int, hi: int) -> float:
    """Sum over integers j in [lo, hi) of max_i (a_i + b_i j)."""
    if hi <= lo:
        return 0.0
    pieces = envelope(lines, hi)
    return pieces_sum(pieces) - (pieces_sum(pieces, lo) if lo else 0.0)


def max_lines(lines: Lines, j: float) -> float:
    return max(a + b * j for a, b in lines)


def steps_to_reach(pieces: list[Piece], target: float) -> int:
    """The fewest steps m >= 1 whose summed time reaches ``target`` (the step in progress at ``target`` ends
    after m steps), or the run's length when it ends first. Solves the quadratic of each piece's partial sum."""
    done = 0.0
    for s, e, a, b in pieces:
        whole = (e - s) * a + b * (s + e - 1) * (e - s) / 2.0  # _line_sum(s, e, a, b), inlined
        if done + whole < target:
            done += whole
            continue
        left, a0 = target - done, a + b * s  # time still to cover; this piece's first step
        if b > 0:  # m a0 + b m (m - 1) / 2 >= left
            h = a0 - b / 2.0
            m = math.ceil((-h + math.sqrt(h * h + 2.0 * b * left)) / b)
        else:
            m = math.ceil(left / a0)
        m = m if m > 1 else 1  # clamped to [1, e - s]
        m = e - s if e - s < m else m
        # Guard the rounding of the root: _line_sum(s, s + m - 1, a, b) >= left, and _line_sum(s, s + m, a, b) <
        # left, written out (the same arithmetic; this runs once per arrival that cuts a decode run).
        while m > 1:
            f = s + m - 1
            if (f - s) * a + b * (s + f - 1) * (f - s) / 2.0 < left:
                break
            m -= 1
        while m < e - s:
            f = s + m
            if (f - s) * a + b * (s + f - 1) * (f - s) / 2.0 >= left:
                break
            m += 1
        return s + m if s + m > 1 else 1
    return pieces[-1][1] if pieces else 1


class StepTable:
    """Per-step times of one replica layout, tabulated over token counts (built once per simulation).

    Scalar look-ups use Python lists: the simulator calls these once per event, where numpy's per-call cost
    would dominate.
    """

    def __init__(self, model: ModelSpec, plan: ServePlan, perf: Perf, engine: EngineProfile | str = "vllm",
                 accelerator: Accelerator | None = None, max_tokens: int | None = None,
                 sampling: Sampling = PLAIN_SAMPLING) -> None:
        self.model, self.plan, self.engine, self.sampling = model, plan, get_engine(engine), sampling
        self.calibration = perf.name
        self.main, self.dec = engine_perf(perf, self.engine)
        self.tier = comm_tier(plan, accelerator)
        self.pp_sends = pp_sends(plan, accelerator)
        self.layers = float(model.layers)
        top = int(max_tokens or (plan.max_batched_tokens + plan.max_batch))
        n = np.arange(top + 1, dtype=float)
        self.tok = self._token_table(n).tolist()
        self.logit = self._logit_table(n).tolist()
        self._extra: dict[tuple[str, int], float] = {}
        self.heads = model.heads / plan.tp
        self.q_dim = self.heads * model.head_dim
        self.kv_dim = kv_heads_per_gpu(model, plan) * model.head_dim
        self.act_bytes, self.kv_bytes = plan.dtype.bytes, plan.kv_cache_dtype.bytes
        self.attn_launch_s = self.main.params.attention.launch_s
        self.mem = self._affine(self.main)
        self.dec_mem = self._affine(self.dec)
        # Seconds per (query, key) pair of attention at each query-token count: 4 q_dim FLOPs at the
        # attention efficiency for that many query rows (perf.attention_s's compute branch).
        eff = curve_value(self.main.params.attention.forward, n * self.heads)
        self.pair_s = (4.0 * self.q_dim / (self.main.peak(plan.dtype) * np.maximum(eff, 1e-300))).tolist()
        self.kernels = {(p, d): float(kernels_per_step(model, plan, p, d)) for p in (0, 1) for d in (0, 1)}
        e = self.engine
        # Dispatch seconds of a step by 2 x (has prefill) + (has decodes): one list index per step.
        self._dispatch = [self.kernels[(p, d)] * e.kernel_dispatch_s for p in (0, 1) for d in (0, 1)]
        host = e.host_cost(plan.tp)
        self.oh0, self.oh1 = host.exposed  # host time the GPU waits for
        self.ov0, self.ov1 = host.overlapped  # host time overlapped with the GPU
        # The captured batch a decode-only step of b sequences replays (padded), 0 = eager; index b.
        self.graph = [e.graph_batch(b) for b in range(e.cuda_graph_max_batch + 1)]
        self.graph_max = len(self.graph) - 1
        self._dec_coef: dict[int, tuple[float, float, float, float, float]] = {}

    # --- tables over token counts ------------------------------------------------------------------
    def _token_table(self, n: np.ndarray) -> np.ndarray:
        """Everything of a step that depends only on its new tokens: layers' token kernels, embedding and final
        norm, TP all-reduces and PP sends (0 for an empty step)."""
        m, p = self.model, self.plan
        layers = self.layers * self.main.ops_s(layer_token_ops(m, p, n, 1.0))
        head = [o for o in head_ops(m, n, p.tp, p.dtype, logits_tokens=0.0, weight_dtype=p.weight_dtype)
                if o.name in ("embedding", "final_norm")]
        comm = tp_comm_s(self.main, m, p, n, 0.0 * n, self.tier)
        out = layers + self.main.ops_s(head) + comm + pp_comm_s(self.main, m, p, n, self.pp_sends)
        return np.where(n > 0, out, 0.0)

    def _logit_table(self, rows: np.ndarray) -> np.ndarray:
        """LM head, logits softmax and the logits gather for ``rows`` positions (0 for none)."""
        m, p = self.model, self.plan
        head = [o for o in head_ops(m, rows, p.tp, p.dtype, logits_tokens=rows, weight_dtype=p.weight_dtype)
                if o.name in ("lm_head", "logits_softmax")] + sampler_ops(m, rows, self.sampling)
        out = self.main.ops_s(head) + tp_comm_s(self.main, m, p, 0.0 * rows, rows, self.tier)
        return np.where(rows > 0, out, 0.0)

    def _beyond(self, kind: str, n: int) -> float:
        """A token count past the table (static batches of long prompts): priced on demand, then kept."""
        key = (kind, n)
        if key not in self._extra:
            x = np.array([float(n)])
            if kind == "token":
                self._extra[key] = float(self._token_table(x)[0])
            elif kind == "logit":
                self._extra[key] = float(self._logit_table(x)[0])
            else:
                eff = float(curve_value(self.main.params.attention.forward, n * self.heads))
                self._extra[key] = 4.0 * self.q_dim / (self.main.peak(self.plan.dtype) * eff)
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

    # --- one step ---------------------------------------------------------------------------------
    def token_time(self, n: int) -> float:
        return self.tok[n] if n < len(self.tok) else self._beyond("token", n)

    def logit_time(self, rows: int) -> float:
        return self.logit[rows] if rows < len(self.logit) else self._beyond("logit", rows)

    def _pair_s(self, n: int) -> float:
        return self.pair_s[n] if n < len(self.pair_s) else self._beyond("pair", n)

    def prefill_attention_s(self, tokens: int, pairs: float, kv_tokens: float) -> float:
        """One layer's prefill attention kernel (serving_layer_ops' attention op, priced as Perf prices it)."""
        if tokens <= 0:
            return 0.0
        nbytes = 2.0 * tokens * self.q_dim * self.act_bytes + 2.0 * kv_tokens * self.kv_dim * self.kv_bytes
        icpt, slope = self.mem
        return self.attn_launch_s + max(pairs * self._pair_s(tokens), icpt + slope * nbytes)

    def decode_attention_s(self, seqs: int, kv_tokens: float) -> float:
        """One layer's decode (paged) attention kernel for ``seqs`` sequences reading ``kv_tokens`` keys."""
        if seqs <= 0:
            return 0.0
        icpt, slope = self.dec_mem
        nbytes = 2.0 * seqs * self.q_dim * self.act_bytes + 2.0 * kv_tokens * self.kv_dim * self.kv_bytes
        return self.attn_launch_s + max(kv_tokens * self._pair_s(seqs), icpt + slope * nbytes)

    def overhead_s(self, seqs: int) -> float:
        return self.oh0 + self.oh1 * seqs

    def padded(self, decode_seqs: int) -> int:
        """The batch a decode-only step of ``decode_seqs`` runs its token kernels at: the captured graph size it
        replays, or itself when it runs eagerly."""
        g = self.graph[decode_seqs] if decode_seqs <= self.graph_max else 0
        return g if g else decode_seqs

    def dispatch_s(self, prefill_tokens: int, decode_seqs: int, seqs: int | None = None) -> float:
        """Host time the step's GPU work overlaps: kernel dispatch outside a CUDA graph (none when the step replays
        one), or the engine's overlapped host phases for ``seqs`` sequences, whichever is longer."""
        ov = self.ov0 + self.ov1 * (decode_seqs if seqs is None else seqs)
        if prefill_tokens == 0 and decode_seqs <= self.graph_max and self.graph[decode_seqs]:
            return ov
        d = self._dispatch[2 * (prefill_tokens > 0) + (decode_seqs > 0)]
        return d if d > ov else ov

    def _decode_coef(self, seqs: int) -> tuple[float, float, float, float, float, float]:
        """Per batch size: (base, compute slope, memory intercept, memory slope, dispatch, dispatch + overhead)
        of a decode step."""
        co = self._dec_coef.get(seqs)
        if co is None:
            b, L = float(seqs), self.layers
            icpt, slope = self.dec_mem
            run = self.padded(seqs)  # token kernels and LM head at the captured batch
            base = self.token_time(run) + self.logit_time(run) + L * self.attn_launch_s + self.overhead_s(seqs)
            cpu = self.dispatch_s(0, seqs)
            co = (base, L * self._pair_s(seqs), L * (icpt + slope * 2.0 * b * self.q_dim * self.act_bytes),
                  L * slope * 2.0 * self.kv_dim * self.kv_bytes, cpu, cpu + self.overhead_s(seqs))
            self._dec_coef[seqs] = co
        return co

    def decode_lines(self, seqs: int, kv_sum0: float) -> Lines:
        """Step time of ``seqs`` decoding sequences as lines in the step index j, when their contexts sum to
        ``kv_sum0`` before step 0 (step j reads kv_sum0 + seqs (j + 1) keys)."""
        co = self._dec_coef.get(seqs) or self._decode_coef(seqs)
        base, comp, x0 = co[0], co[1], kv_sum0 + seqs
        if co[4] > 0:
            return ((base + comp * x0, comp * seqs), (base + co[2] + co[3] * x0, co[3] * seqs), (co[5], 0.0))
        return (base + comp * x0, comp * seqs), (base + co[2] + co[3] * x0, co[3] * seqs)

    def decode_run(self, seqs: int, kv_sum0: float, k: int) -> tuple[Lines, list[Piece], float]:
        """A run of ``k`` decode steps: its lines, their envelope, and its total time (closed form)."""
        co = self._dec_coef.get(seqs) or self._decode_coef(seqs)
        if co[4] > 0 or k <= 1:  # three lines (CPU-dispatch floor) or a single step: the general path
            lines = self.decode_lines(seqs, kv_sum0)
            pieces = envelope(lines, k)
            return lines, pieces, pieces_sum(pieces)
        # decode_lines, envelope and pieces_sum for two lines, written out with the same arithmetic: the simulator
        # runs this once per decode run.
        base, comp, x0 = co[0], co[1], kv_sum0 + seqs
        a1, b1, a2, b2 = base + comp * x0, comp * seqs, base + co[2] + co[3] * x0, co[3] * seqs
        lines = ((a1, b1), (a2, b2))
        if (a2, b2) > (a1, b1):
            a1, b1, a2, b2 = a2, b2, a1, b1  # line 1 is the maximum at step 0
        if b2 > b1:
            x = math.ceil((a1 - a2) / (b2 - b1))
            if 0 < x < k:
                return lines, [(0, x, a1, b1), (x, k, a2, b2)], (
                    0.0 + (x * a1 + b1 * (x - 1) * x / 2.0) + ((k - x) * a2 + b2 * (x + k - 1) * (k - x) / 2.0))
            if x <= 0:
                a1, b1 = a2, b2
        return lines, [(0, k, a1, b1)], 0.0 + (k * a1 + b1 * (k - 1) * k / 2.0)

    def step_s(self, prefill_tokens: int = 0, prefill_seqs: int = 0, prefill_pairs: float = 0.0,
               prefill_kv_tokens: float = 0.0, decode_seqs: int = 0, decode_kv_tokens: float = 0.0,
               logits: int | None = None) -> float:
        """One step's total seconds (equal to iteration_time(...).total_s for the same shape)."""
        # The same arithmetic as token_time + logit_time + layers x (prefill_attention_s + decode_attention_s),
        # then dispatch_s and overhead_s, written out: this runs once per prompt step of the simulation.
        rows = prefill_seqs + decode_seqs if logits is None else logits
        n = prefill_tokens + decode_seqs
        graphed = prefill_tokens == 0 and decode_seqs <= self.graph_max and self.graph[decode_seqs]
        if graphed:  # a captured graph: token kernels and LM head at the padded batch
            n = rows = self.graph[decode_seqs]
        tok = self.tok[n] if n < len(self.tok) else self._beyond("token", n)
        logit = self.logit[rows] if rows < len(self.logit) else self._beyond("logit", rows)
        # (``y if y > x else x`` is max(x, y); _pair_s is a list look-up past which _beyond prices.)
        pa = da = 0.0
        pair_s = self.pair_s
        if prefill_tokens > 0:
            nbytes = (2.0 * prefill_tokens * self.q_dim * self.act_bytes
                      + 2.0 * prefill_kv_tokens * self.kv_dim * self.kv_bytes)
            icpt, slope = self.mem
            comp = prefill_pairs * (pair_s[prefill_tokens] if prefill_tokens < len(pair_s)
                                    else self._beyond("pair", prefill_tokens))
            mem = icpt + slope * nbytes
            pa = self.attn_launch_s + (mem if mem > comp else comp)
        if decode_seqs > 0:
            icpt, slope = self.dec_mem
            nbytes = (2.0 * decode_seqs * self.q_dim * self.act_bytes
                      + 2.0 * decode_kv_tokens * self.kv_dim * self.kv_bytes)
            comp = decode_kv_tokens * (pair_s[decode_seqs] if decode_seqs < len(pair_s)
                                       else self._beyond("pair", decode_seqs))
            mem = icpt + slope * nbytes
            da = self.attn_launch_s + (mem if mem > comp else comp)
        gpu = tok + logit + self.layers * (pa + da)
        seqs = prefill_seqs + decode_seqs
        cpu = self.ov0 + self.ov1 * seqs
        if not graphed:
            d = self._dispatch[2 * (prefill_tokens > 0) + (decode_seqs > 0)]
            cpu = d if d > cpu else cpu
        return (cpu if cpu > gpu else gpu) + (self.oh0 + self.oh1 * seqs)


__all__ = ["Lines", "Piece", "StepTable", "envelope", "max_lines", "pieces_sum", "steps_to_reach", "sum_max_lines"]
