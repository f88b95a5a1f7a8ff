"""Engine-step times tabulated for the simulator, and decode runs summed in closed form.

:func:`capsim.analytic.serving.iteration_time` prices one step from the op list. The simulator needs millions of
steps, so :class:`StepTable` evaluates that same pricing once over every token count (one vectorised call) and
keeps attention as its two exact roofline branches, which are affine in the step's context:

    attention = launch + max(flops / (peak * eff(rows)), (bytes + half_bytes) / bandwidth)

(``capsim.perf.Perf.attention_s`` with ``memory_bytes_s`` = bytes / (bw * bytes / (bytes + half))). A decode
step is then a maximum of lines in its summed context, and a run of decode steps is summed in closed form by
:mod:`capsim.analytic.line_sums` (whose names are re-exported here).
"""

from __future__ import annotations

import math

import numpy as np

from capsim.analytic.attention import capped, kernel_dims, layer_shares, serving_kernels
from capsim.analytic.line_sums import (
    Lines,
    Piece,
    envelope,
    line_sum,
    max_lines,
    pieces_sum,
    steps_to_reach,
    sum_max_lines,
)
from capsim.analytic.mixers import SCAN_PREFIX
from capsim.analytic.ops import OpKind, Phase, StepBatch, gemm, head_ops
from capsim.analytic.paged_grid import grid_factor
from capsim.analytic.serving import (
    DEFAULT_SAMPLING,
    Sampling,
    comm_tier,
    decode_attention_line,
    engine_perf,
    kernels_per_step,
    layer_token_ops,
    layer_token_s,
    logit_ops,
    pp_comm_s,
    pp_sends,
    tp_comm_s,
)
from capsim.analytic.serving import attention_ops as serving_attention_ops
from capsim.analytic.serving_moe import decode_kv_reads, gpu_kernel_dims, local_batch
from capsim.errors import SpecError
from capsim.perf import Perf, curve_value
from capsim.specs.engine import EngineProfile, get_engine
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan


def _capped(tokens: float, seqs: float, pairs: float, keys: float, window: float) -> tuple[float, float]:
    p, k = capped(tokens, seqs, pairs, keys, window)
    return float(p), float(k)


def first_call_costs(main: Perf, model: ModelSpec, plan: ServePlan, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first-call seconds of a step's layer GEMMs at n tokens, of the LM head at n logit rows) on the engine's perf
    (engine_perf): one primitive per distinct linear of a layer (every layer shares its shapes), one for the head
    (Perf.gemm_first_call_s); 0 for no tokens, and everywhere the calibration measured no first calls."""
    n = np.asarray(n, float)
    linears = {o.name: o for o in layer_token_ops(model, plan, n, 1.0) if o.kind is OpKind.GEMM}
    tok = sum((main.gemm_first_call_s(*o.shape, o.dtype) for o in linears.values()), 0.0 * n)
    head = next(o for o in head_ops(model, n, plan.tp, plan.dtype, logits_tokens=n) if o.name == "lm_head")
    return np.where(n > 0, tok, 0.0), np.where(n > 0, main.gemm_first_call_s(*head.shape, head.dtype), 0.0)


class StepTable:
    """Per-step times of one replica layout, tabulated over token counts (built once per simulation).

    Scalar look-ups use Python lists: the simulator calls these once per event, where numpy's per-call cost
    would dominate.
    """

    def __init__(self, model: ModelSpec, plan: ServePlan, perf: Perf, engine: EngineProfile | str = "vllm",
                 accelerator: Accelerator | None = None, max_tokens: int | None = None,
                 sampling: Sampling = DEFAULT_SAMPLING) -> None:
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
        # First calls of new GEMM shapes, where the calibration measured them (a CPU's oneDNN primitives): the
        # replica pays first_tok[n] the first time a step runs n tokens, first_logit[r] the first time r logit rows.
        self.first_calls = bool(self.main.params.gemm.first_call)
        if self.first_calls:
            self.first_tok, self.first_logit = (t.tolist() for t in first_call_costs(self.main, model, plan, n))
        self._extra: dict[tuple[str, int], float] = {}
        self._init_attention(model, plan, n)
        self._init_host(model, plan)
        self._dec_lines: dict[int, tuple[float, float, float]] = {}
        self._dec_coef: dict[int, tuple[float, float, float, float, float, float]] = {}
        self._dec_coef_windowed: dict[int, tuple[float, float, float, float, float, float]] = {}
        self.max_window = max((w for w, _ in self.shares if w), default=0.0)
        # One kind of layer (no sliding window), no attention scaling beyond the roofline and no MLA: the per-layer
        # loops of prefill_attention_s and decode_attention_s have a single term of share 1, computed directly.
        self._plain = self.shares == [(None, 1.0)] and not self._att_scaled and not self.mla
        # decode_lines gives two lines (no window, no attention scaling, no host dispatch floor) once a batch size's
        # coefficients are cached: decode_run then sums them without the general calls.
        self._two_lines = not self.max_window and not self._att_scaled
        # The release's decode launch grid and the GPU's SMs, where both are known: decode runs then price how the
        # grid's blocks share the SMs (grid_scale); else decode attention is balanced over the GPU.
        grid, sms = self.engine.decode_grid, accelerator.sms if accelerator is not None else None
        regs = grid.registers_for(accelerator.name, plan.kv_cache_dtype.value, model.head_dim) \
            if grid is not None and accelerator is not None and sms else None
        self.grid = (grid, int(sms), int(model.heads // plan.tp), regs) if regs else None

    def grid_scale(self, contexts: list[int]) -> float:
        """How much longer one decode launch over sequences of ``contexts`` keys takes than a balanced one
        (capsim.analytic.paged_grid.grid_factor); 1 without a grid."""
        if self.grid is None or not contexts:
            return 1.0
        grid, sms, heads, regs = self.grid
        return grid_factor(grid, contexts, heads, sms, regs)

    def _init_attention(self, model: ModelSpec, plan: ServePlan, n: np.ndarray) -> None:
        """Attention's constants: bytes and FLOPs per query token and per key, the layers' windows, the
        calibration's attention scaling, and the seconds per (query, key) pair over the token counts ``n``."""
        self.heads = model.heads / plan.tp
        kp = gpu_kernel_dims(model, plan, Phase.PREFILL)
        kd = gpu_kernel_dims(model, plan, Phase.DECODE, decode_kv_reads(model, plan, self.engine))
        self.act_bytes, self.kv_bytes = plan.dtype.bytes, plan.kv_cache_dtype.bytes
        # Bytes an attention kernel moves per query token and per key (serving_kernels' attention op). Python
        # floats: kernel_dims gives numpy scalars, which would make every step time (and the replica clocks that
        # add them up) a numpy scalar, several times slower to add and compare; the values are the same doubles.
        self.pre_q = float(kp.q_elems * self.act_bytes)
        self.pre_kv = float(kp.kv_elems * (self.kv_bytes if kp.kv_cached else self.act_bytes))
        self.dec_q = float(kd.q_elems * self.act_bytes)
        self.dec_kv = float(kd.kv_elems * self.kv_bytes)
        self.flops_per_pair = {"pair": float(kp.flops_per_pair), "dpair": float(kd.flops_per_pair)}
        self.shares = layer_shares(model)  # (window, share) of global and sliding-window layers
        # A hybrid stack: attention in its attention layers' share, the recurrent layers' chunked scans and states
        # priced per (tokens, sequences) of a step (capsim.analytic.mixers), cached.
        self.hybrid = model.is_hybrid
        self.attn_share = model.attention_layers / model.layers if self.hybrid else 1.0
        self._mix: dict[tuple[int, int], float] = {}
        self.mla = model.is_mla
        self.attn_launch_s = self.main.params.attention.launch_s
        # A measured calibration's attention residuals (Perf.attention_factor), cached on a 1/32-octave grid.
        self._att_table = bool(self.main.params.attention.table)
        # The main kernel's forward curves (serving_kernels' ops): prefill under the causal mask, decode without
        # (AttentionParams.curves; the same curve where the calibration holds no causal rate).
        att = self.main.params.attention
        self._curve = {"pair": att.curves("", causal=True)[0], "dpair": att.curves("", causal=False)[0]}
        # A curve with a second half size also follows the keys per sequence (Perf.attention_s's kv_per_seq):
        # pair_s holds the query-rows part, the keys part multiplies where a step's keys are known.
        self._kv_half, self._dkv_half = (float(c.half_sizes[1]) if len(c.half_sizes) > 1 else 0.0
                                         for c in self._curve.values())
        self._att_cache: dict[tuple[int, int, int], float] = {}
        # Whether attention's body scales with its shape beyond the two roofline lines (residuals or the keys
        # factor): decided once per table, so a step without either reads no factor at all.
        self._att_scaled = self._att_table or bool(self._kv_half) or bool(self._dkv_half)
        # Attention's memory branch runs at the "attention" bandwidth where the calibration measured one
        # (Perf.attention_s prices its bytes with memory_bytes_s(bytes, "attention")).
        self.mem = self._affine(self.main, "attention")
        self.dec_mem = self._affine(self.dec, "attention")
        self._dec_line = decode_attention_line(self.engine, plan)  # the engine's measured decode kernel, if timed
        # Seconds per (query, key) pair of attention at each query-token count: the kernel's FLOPs per pair at the
        # attention efficiency for that many query rows (perf.attention_s's compute branch).
        eff = np.maximum(curve_value(self._curve["pair"], n * self.heads), 1e-300)
        deff = np.maximum(curve_value(self._curve["dpair"], n * self.heads), 1e-300)
        self.pair_s = (kp.flops_per_pair / (self.main.peak(plan.dtype) * eff)).tolist()
        self.dpair_s = (kd.flops_per_pair / (self.main.peak(plan.dtype) * deff)).tolist() \
            if self.mla or self._curve["pair"] != self._curve["dpair"] else self.pair_s
        self.dec_gemm = self._context_gemm_table(n).tolist() if self.mla else [0.0] * len(n)
        self._kv_up: dict[int, float] = {}

    def _init_host(self, model: ModelSpec, plan: ServePlan) -> None:
        """The engine's host side: kernel dispatch per kind of step, exposed and overlapped host time, and the
        CUDA graph each decode batch replays."""
        self.kernels = {(p, d): float(kernels_per_step(model, plan, p, d)) for p in (0, 1) for d in (0, 1)}
        e = self.engine
        # Dispatch seconds of a step by 2 x (has prefill) + (has decodes): one list index per step.
        self._dispatch = [self.kernels[(p, d)] * e.kernel_dispatch_s for p in (0, 1) for d in (0, 1)]
        host = e.host_cost(plan.tp)
        self.oh0, self.oh1, self.oh2 = host.exposed  # host time the GPU waits for (per step, sequence, prompt token)
        self.ov0, self.ov1, self.ov2 = host.overlapped  # host time overlapped with the GPU
        # Per request, exposed: handing an admitted request to the engine, and the call after a step that finished
        # requests (engines.yaml server_calls).
        self.admit_s, self.finish_s = host.admit_s, host.finish_s
        # The captured batch a decode-only step of b sequences replays (padded), 0 = eager; index b.
        self.graph = [e.graph_batch(b) for b in range(e.cuda_graph_max_batch + 1)]
        self.graph_max = len(self.graph) - 1

    # --- tables over token counts ------------------------------------------------------------------
    def _token_table(self, n: np.ndarray) -> np.ndarray:
        """Everything of a step that depends only on its new tokens: layers' token kernels, embedding and final
        norm, TP all-reduces and PP sends (0 for an empty step)."""
        m, p = self.model, self.plan
        layers = self.layers * layer_token_s(self.main, m, p, n, 1.0, self.engine)
        head = [o for o in head_ops(m, n, p.tp, p.dtype, logits_tokens=0.0, weight_dtype=p.weight_dtype)
                if o.name in ("embedding", "final_norm")]
        comm = tp_comm_s(self.main, m, p, n, 0.0 * n, self.tier)
        out = layers + self.main.ops_s(head) + comm + pp_comm_s(self.main, m, p, n, self.pp_sends)
        return np.where(n > 0, out, 0.0)

    def _logit_table(self, rows: np.ndarray) -> np.ndarray:
        """LM head, logits softmax and the logits gather for ``rows`` positions (0 for none)."""
        m, p = self.model, self.plan
        head, measured = logit_ops(m, p, rows, self.engine, self.sampling)  # + the engine's own sampler, if profiled
        out = self.main.ops_s(head) + measured + tp_comm_s(self.main, m, p, 0.0 * rows, rows, self.tier)
        return np.where(rows > 0, out, 0.0)

    def first_call_s(self, tokens: int, rows: int, seen_tokens: set[int], seen_rows: set[int]) -> float:
        """Seconds a step of ``tokens`` tokens and ``rows`` logit rows adds the first time its shapes run on a
        replica (recorded in the replica's ``seen_*`` sets, which this updates); 0 where none were measured."""
        extra = 0.0
        if tokens not in seen_tokens:
            seen_tokens.add(tokens)
            extra += self.first_tok[tokens] if tokens < len(self.first_tok) else 0.0
        if rows not in seen_rows:
            seen_rows.add(rows)
            extra += self.first_logit[rows] if rows < len(self.first_logit) else 0.0
        return extra

    def _beyond(self, kind: str, n: int) -> float:
        """A token count past the table (static batches of long prompts): priced on demand, then kept."""
        key = (kind, n)
        if key not in self._extra:
            x = np.array([float(n)])
            if kind == "token":
                self._extra[key] = float(self._token_table(x)[0])
            elif kind == "logit":
                self._extra[key] = float(self._logit_table(x)[0])
            elif kind == "gemm":
                self._extra[key] = float(self._context_gemm_table(x)[0]) if self.mla else 0.0
            else:  # "pair" (prefill) or "dpair" (decode) seconds per (query, key) pair
                eff = float(curve_value(self._curve[kind], n * self.heads))
                self._extra[key] = float(self.flops_per_pair[kind]) / (self.main.peak(self.plan.dtype) * eff)
        return self._extra[key]

    def _context_gemm_table(self, seqs: np.ndarray) -> np.ndarray:
        """MLA's decode GEMMs that absorb W^UK and W^UV around the latent kernel, for ``seqs`` decoding sequences
        (capsim.analytic.attention.serving_kernels; 0 for none)."""
        p = self.plan  # attention data parallel: each GPU's 1/tp of the sequences with every head
        ops = serving_kernels(self.model, local_batch(StepBatch(seqs, seqs, 0.0, 0.0), p), 1 if p.dp_attention else p.tp,
                              Phase.DECODE,
                              self.plan.dtype, self.plan.kv_cache_dtype, self.plan.compute_dtype,
                              (self.plan.weight_dtype or self.plan.dtype).bytes)
        gemms = [o for o in ops if o.kind is OpKind.GEMM]
        return np.where(seqs > 0, self.main.ops_s(gemms), 0.0)

    def _kv_up_s(self, keys: float, share: float) -> float:
        """MLA prefill: rebuilding K and V of ``keys`` keys from the latent (one GEMM), priced once per size (with
        attention data parallelism, each GPU rebuilds its 1/tp of the keys for every head)."""
        key = int(round(keys))
        if key not in self._kv_up:
            p = self.plan
            dp = p.tp if p.dp_attention else 1
            k = kernel_dims(self.model, 1 if p.dp_attention else p.tp, Phase.PREFILL)
            width = k.heads * (self.model.head_dim - self.model.qk_rope_head_dim + self.model.v_dim)
            op = gemm("kv_up", float(key) / dp, width, self.model.kv_lora_rank, p.compute_dtype,
                      self.act_bytes, (p.weight_dtype or p.dtype).bytes)
            self._kv_up[key] = float(self.main.op_s(op))
        return share * self._kv_up[key]

    @staticmethod
    def _affine(perf: Perf, kind: str = "") -> tuple[float, float]:
        """(intercept, slope) of perf.memory_bytes_s(bytes, kind), checked to be affine in the bytes moved."""
        x1, x2, x3 = 1.0e6, 2.0e6, 1.0e10
        t1, t2, t3 = (float(perf.memory_bytes_s(x, kind)) for x in (x1, x2, x3))
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

    def _dpair_s(self, n: int) -> float:
        return self.dpair_s[n] if n < len(self.dpair_s) else self._beyond("dpair", n)

    def kv_slowdown(self, kv_per_seq: float, decode: bool = False) -> float:
        """1 / (the efficiency curve's keys-per-sequence factor): how much slower attention's compute branch is at
        this many keys per sequence (1 for a curve over query rows only); ``decode``: the decode kernel's curve."""
        h = self._dkv_half if decode else self._kv_half
        return 1.0 if not h else (kv_per_seq + h) / max(kv_per_seq, 1e-9)

    def att_factor(self, rows: float, kv_per_seq: float, flops: float, nbytes: float) -> float:
        """Perf.attention_factor for one kernel (1 without measured attention residuals)."""
        if not self._att_table or flops <= 0 or nbytes <= 0:
            return 1.0
        key = (round(32 * math.log2(max(rows, 1e-9))), round(32 * math.log2(max(kv_per_seq, 1e-9))),
               round(32 * math.log2(flops / nbytes)))
        f = self._att_cache.get(key)
        if f is None:
            f = self._att_cache[key] = float(self.main.attention_factor(flops, nbytes, rows, kv_per_seq,
                                                                        self.plan.dtype))
        return f

    def att_scale(self, rows: float, kv_per_seq: float, flops: float, nbytes: float,
                  decode: bool = False) -> tuple[float, float]:
        """(compute, memory) multipliers of one attention kernel's body (Perf.attention_s): the measured residual
        scales both branches, the keys-per-sequence factor the compute branch only. Called only when the table's
        calibration has either (``_att_scaled``)."""
        f = self.att_factor(rows, kv_per_seq, flops, nbytes)
        return f * self.kv_slowdown(kv_per_seq, decode), f

    def mixer_s(self, tokens: int, seqs: int) -> float:
        """One layer's recurrent scans and state traffic (a hybrid stack's share of them) for ``seqs`` sequences
        with ``tokens`` new tokens: serving.attention_ops' ``scan_`` ops, priced once per shape."""
        key = (tokens, seqs)
        out = self._mix.get(key)
        if out is None:
            ops = serving_attention_ops(self.model, self.plan, StepBatch(float(seqs), float(tokens), 0.0, 0.0))
            out = self._mix[key] = float(self.main.ops_s([o for o in ops if o.name.startswith(SCAN_PREFIX)]))
        return out

    def prefill_attention_s(self, tokens: int, pairs: float, kv_tokens: float, seqs: int = 1) -> float:
        """One layer's prefill attention (serving_kernels' ops, priced as Perf prices them): per kind of layer, the
        kernel over its pairs and keys (a sliding window caps them as the mean sequence allows), and MLA's K/V
        rebuild."""
        if tokens <= 0:
            return 0.0
        icpt, slope = self.mem
        per_pair = self.pair_s[tokens] if tokens < len(self.pair_s) else self._beyond("pair", tokens)
        if self._plain:  # the loop's one term (share 1.0: the same value)
            comp, mem = pairs * per_pair, icpt + slope * (tokens * self.pre_q + kv_tokens * self.pre_kv)
            return self.attn_launch_s + (mem if mem > comp else comp)
        out = 0.0
        for window, share in self.shares:
            p, kv = (pairs, kv_tokens) if not window else _capped(tokens, seqs, pairs, kv_tokens, window)
            nbytes = tokens * self.pre_q + kv * self.pre_kv
            comp, mem = p * per_pair, icpt + slope * nbytes
            if self._att_scaled:
                c, m = self.att_scale(tokens * self.heads, kv / max(seqs, 1), p * self.flops_per_pair["pair"], nbytes)
                comp, mem = comp * c, mem * m
            out += share * (self.attn_launch_s + (mem if mem > comp else comp))
            if self.mla:
                out += self._kv_up_s(kv, share)
        return out + self.mixer_s(tokens, seqs) if self.hybrid else out

    def decode_attention_lines(self, seqs: int) -> tuple[float, float, float]:
        """One decode attention kernel of ``seqs`` sequences, less its launch and residual, as two lines in the keys
        x it reads: max(compute x, memory0 + memory1 x) -> (compute, memory0, memory1) (cached per batch size)."""
        lines = self._dec_lines.get(seqs)
        if lines is None:
            if self._dec_line is not None:  # the engine's measured kernel: per call (less the launch) + per byte
                per_call, per_byte = self._dec_line
                lines = (0.0, per_call - self.attn_launch_s + per_byte * seqs * self.dec_q, per_byte * self.dec_kv)
            else:
                icpt, slope = self.dec_mem
                lines = (self._dpair_s(seqs), icpt + slope * seqs * self.dec_q, slope * self.dec_kv)
            self._dec_lines[seqs] = lines
        return lines

    def decode_scale(self, seqs: int, kv: float) -> tuple[float, float]:
        """att_scale of a decode kernel of ``seqs`` sequences reading ``kv`` keys (none on the engine's measured
        line)."""
        if self._dec_line is not None:
            return 1.0, 1.0
        return self.att_scale(seqs * self.heads, kv / seqs, kv * self.flops_per_pair["dpair"],
                              seqs * self.dec_q + kv * self.dec_kv, decode=True)

    def decode_attention_s(self, seqs: int, kv_tokens: float, grid: float = 1.0) -> float:
        """One layer's decode (paged) attention for ``seqs`` sequences reading ``kv_tokens`` keys (MLA: with its
        absorbing GEMMs), its kernel's body ``grid`` times longer than balanced (grid_scale)."""
        if seqs <= 0:
            return 0.0
        per_key, m0, m1 = self._dec_lines.get(seqs) or self.decode_attention_lines(seqs)
        out = self.dec_gemm[seqs] if seqs < len(self.dec_gemm) else self._beyond("gemm", seqs)
        if self._plain:  # the loop's one term (share 1.0: the same value)
            comp, mem = per_key * kv_tokens, m0 + m1 * kv_tokens
            return out + (self.attn_launch_s + grid * (mem if mem > comp else comp))
        for window, share in self.shares:
            kv = kv_tokens if not window else _capped(seqs, seqs, kv_tokens, kv_tokens, window)[1]
            comp, mem = per_key * kv, m0 + m1 * kv
            if self._att_scaled:
                c, m = self.decode_scale(seqs, kv)
                comp, mem = comp * c, mem * m
            out += share * (self.attn_launch_s + grid * (mem if mem > comp else comp))
        return out + self.mixer_s(seqs, seqs) if self.hybrid else out

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
            L = self.layers
            gemms = self.dec_gemm[seqs] if seqs < len(self.dec_gemm) else self._beyond("gemm", seqs)
            run = self.padded(seqs)  # token kernels and LM head at the captured batch
            a = self.attn_share  # the attention layers' share of the stack (1 but in a hybrid)
            mix = self.mixer_s(seqs, seqs) if self.hybrid else 0.0
            base = (self.token_time(run) + self.logit_time(run) + L * (a * self.attn_launch_s + gemms + mix)
                    + self.overhead_s(seqs))
            comp, m0, m1 = self.decode_attention_lines(seqs)
            cpu = self.dispatch_s(0, seqs)
            co = (base, L * a * comp, L * a * m0, L * a * m1, cpu, cpu + self.overhead_s(seqs))
            self._dec_coef[seqs] = co
        return co

    def _windowed_coef(self, seqs: int) -> tuple[float, float, float, float, float, float]:
        """_decode_coef once every sequence's mean context has reached the window: sliding-window layers read a
        constant seqs x W keys (their time joins the base), only global layers grow with the context."""
        co = self._dec_coef_windowed.get(seqs)
        if co is None:
            base, comp, mem0, mem1, cpu, cpu_oh = self._decode_coef(seqs)
            per_key, m0, m1 = self.decode_attention_lines(seqs)
            fixed, glob = 0.0, 0.0
            for window, share in self.shares:
                if not window:
                    glob += share
                    continue
                kv = seqs * window
                comp_w, mem_w = per_key * kv, m0 + m1 * kv
                fixed += self.layers * share * (mem_w if mem_w > comp_w else comp_w)
            co = (base + fixed, glob * comp, glob * mem0, glob * mem1, cpu, cpu_oh)
            self._dec_coef_windowed[seqs] = co
        return co

    def _coef(self, seqs: int, kv_sum0: float) -> tuple[float, float, float, float, float, float]:
        """The decode coefficients of a run starting at ``kv_sum0``: windowed when its mean context starts at or past
        every window (exact for the whole run). A run that crosses a window is priced over the whole context, an
        upper bound past the crossing (the closed form needs attention affine in the run's summed context)."""
        if self.max_window and kv_sum0 + seqs >= seqs * self.max_window:
            return self._windowed_coef(seqs)
        return self._dec_coef.get(seqs) or self._decode_coef(seqs)

    def _scaled_coef(self, co: tuple[float, float, float, float, float, float], seqs: int,
                     kv_sum0: float) -> tuple[float, float, float, float, float, float]:
        """Decode coefficients with a measured calibration's attention scaling taken at the run's first step (exact
        there; a run's contexts grow by its length, which the closed form does not follow)."""
        c, m = self.decode_scale(seqs, kv_sum0 + seqs)
        # base keeps the kernels' launches (Perf.attention_s scales the body only); the attention lines scale.
        return (co[0], co[1] * c, co[2] * m, co[3] * m, co[4], co[5])

    def decode_lines(self, seqs: int, kv_sum0: float, grid: float = 1.0) -> Lines:
        """Step time of ``seqs`` decoding sequences as lines in the step index j, when their contexts sum to
        ``kv_sum0`` before step 0 (step j reads kv_sum0 + seqs (j + 1) keys), the attention kernels ``grid`` times
        longer than balanced over the whole run (the simulator takes it when the batch last changed,
        capsim.sim.serving.kv.DecodeSet.grid_scale)."""
        co = (self._dec_coef.get(seqs) if not self.max_window else None) or self._coef(seqs, kv_sum0)
        if self._att_scaled:
            co = self._scaled_coef(co, seqs, kv_sum0)
        if grid != 1.0:
            co = (co[0], co[1] * grid, co[2] * grid, co[3] * grid, co[4], co[5])
        base, comp, x0 = co[0], co[1], kv_sum0 + seqs
        if co[4] > 0:
            return ((base + comp * x0, comp * seqs), (base + co[2] + co[3] * x0, co[3] * seqs), (co[5], 0.0))
        return (base + comp * x0, comp * seqs), (base + co[2] + co[3] * x0, co[3] * seqs)

    def decode_run(self, seqs: int, kv_sum0: float, k: int, grid: float = 1.0) -> tuple[list[Piece], float]:
        """A run of ``k`` decode steps: the envelope of its step times and its total time (closed form)."""
        co = self._dec_coef.get(seqs) if self._two_lines and grid == 1.0 else None
        if co is not None and k > 1 and co[4] <= 0:  # decode_lines' two lines and envelope's two-line case, without the calls
            base, x0 = co[0], kv_sum0 + seqs
            a1, b1, a2, b2 = base + co[1] * x0, co[1] * seqs, base + co[2] + co[3] * x0, co[3] * seqs
            if a1 < a2 or (a1 == a2 and b1 < b2):  # line 1 is the maximum at step 0
                a1, b1, a2, b2 = a2, b2, a1, b1
            if b2 > b1:
                q = (a1 - a2) / (b2 - b1)  # envelope's _crossing
                x = math.ceil(q if q < k else float(k))  # q >= 0 here (a1 >= a2): max(q, -1) is q
                if 0 < x < k:
                    pieces = [(0, x, a1, b1), (x, k, a2, b2)]
                    return pieces, pieces_sum(pieces)
                if x <= 0:
                    a1, b1 = a2, b2
            return [(0, k, a1, b1)], k * a1 + b1 * (k - 1) * k / 2.0  # line_sum(0, k, a1, b1)
        pieces = envelope(self.decode_lines(seqs, kv_sum0, grid), k)
        if len(pieces) == 1:  # the common case: pieces_sum of one piece
            s, e, a, b = pieces[0]
            return pieces, line_sum(s, e, a, b)
        return pieces, pieces_sum(pieces)

    def step_s(self, prefill_tokens: int = 0, prefill_seqs: int = 0, prefill_pairs: float = 0.0,
               prefill_kv_tokens: float = 0.0, decode_seqs: int = 0, decode_kv_tokens: float = 0.0,
               logits: int | None = None, admitted: int | None = None, grid: float = 1.0,
               prompt_tokens: int | None = None) -> float:
        """One step's total seconds (at grid 1, equal to iteration_time(...).total_s for the same shape): the GPU's
        kernels (token kernels and LM head at the captured batch when a decode-only step replays a CUDA graph) or the host
        work they overlap, whichever is longer, then the engine's exposed host time, with ``admitted`` requests
        handed to the engine before it (default: every prefill sequence), decode attention ``grid`` times longer than
        balanced (grid_scale). ``prompt_tokens``: the prompts' own tokens, which the per-prompt-token host terms
        price (default: ``prefill_tokens``; fewer where padding rows run through the model but hold no prompt)."""
        rows = prefill_seqs + decode_seqs if logits is None else logits
        n = prefill_tokens + decode_seqs
        graphed = prefill_tokens == 0 and decode_seqs <= self.graph_max and self.graph[decode_seqs]
        if graphed:
            n = rows = self.graph[decode_seqs]
        tok, logit = self.tok, self.logit  # token_time, logit_time: table reads
        gpu = ((tok[n] if n < len(tok) else self._beyond("token", n))
               + (logit[rows] if rows < len(logit) else self._beyond("logit", rows))
               + self.layers * (self.prefill_attention_s(prefill_tokens, prefill_pairs, prefill_kv_tokens, prefill_seqs)
                                + self.decode_attention_s(decode_seqs, decode_kv_tokens, grid)))
        seqs = prefill_seqs + decode_seqs
        prompt = prefill_tokens if prompt_tokens is None else prompt_tokens
        cpu = self.ov0 + self.ov1 * seqs + self.ov2 * prompt  # dispatch_s with the per-prompt-token term
        if not graphed:
            d = self._dispatch[2 * (prefill_tokens > 0) + (decode_seqs > 0)]
            cpu = d if d > cpu else cpu
        admit = self.admit_s * (prefill_seqs if admitted is None else admitted)
        overhead = self.oh0 + self.oh1 * seqs  # overhead_s(seqs)
        return (cpu if cpu > gpu else gpu) + overhead + self.oh2 * prompt + admit

__all__ = ["Lines", "Piece", "StepTable", "first_call_costs", "envelope", "max_lines", "pieces_sum", "steps_to_reach", "sum_max_lines"]
