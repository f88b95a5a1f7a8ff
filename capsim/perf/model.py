"""The device model: how long an op or a collective takes under one calibration (measured or datasheet).

Op time is a roofline: ``launch + max(flops / (peak * efficiency(shape)), bytes / bandwidth)``
(Williams et al. 2009, "Roofline"), with every efficiency read from the calibration (STYLE.md #3).
Collective time is ``alpha + bus_bytes / bus_bandwidth`` (Hockney's model; nccl-tests' busbw convention).
All inputs may be numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from capsim._types import Num
from capsim.errors import SpecError
from capsim.perf.categories import candidate_keys, category_of
from capsim.perf.params import Collective, Curve, DeviceParams, Link, Tier
from capsim.specs.engine import GemmPath
from capsim.specs.precision import DType, require_block_scaling


def curve_value(curve: Curve, *sizes: Num) -> Num:
    """``peak_fraction * prod(x / (x + half))``; sizes beyond the curve's half sizes are ignored."""
    out: Num = curve.peak_fraction
    for x, half in zip(sizes, curve.half_sizes, strict=False):
        x = np.maximum(np.asarray(x, float), 1e-9)
        out = out * x / (x + half)
    return out


class Perf:
    """Times ops and collectives from one calibration; ``name`` says which, for every prediction."""

    def __init__(self, params: DeviceParams) -> None:
        self.params = params

    @property
    def name(self) -> str:
        return self.params.name

    def peak(self, fmt: DType | str) -> float:
        key = DType(fmt).peak_key
        require_block_scaling(fmt, bool(self.params.peak_flops_per_s.get("fp4")), f"calibration {self.name}")
        value = self.params.peak_flops_per_s.get(key)
        if not value:
            raise SpecError("precision", f"calibration {self.name} has no {fmt} rate",
                            f"use one of {', '.join(k for k, v in self.params.peak_flops_per_s.items() if v)}")
        return value

    # --- compute -------------------------------------------------------------------------------
    def gemm_s(self, m: Num, n: Num, k: Num, fmt: DType | str = DType.BF16, count: Num = 1,
               nbytes: Num = 0.0, accumulation: str = "") -> Num:
        """One (batched) GEMM of ``count`` products [m,k]@[k,n]: one launch, then the roofline. ``accumulation``:
        the kernel's accumulation where the calibration prices it apart (``dtype_scale['<fmt>.<accumulation>']``,
        e.g. "fp8.split": FP32-promoted accumulation), else the format's own factor."""
        g, fmt_key = self.params.gemm, DType(fmt).value
        scale = g.dtype_scale.get(f"{fmt_key}.{accumulation}") if accumulation else None
        eff = curve_value(g.efficiency, m, n, k) * (g.dtype_scale.get(fmt_key, 1.0) if scale is None else scale)
        flops = 2.0 * np.asarray(m, float) * n * k * count
        compute = flops / (self.peak(fmt) * eff)
        key, kind = self.gemm_table_key(fmt)
        if g.table is not None:
            compute = compute * _table_factor(g.table, key, m, n, k)
        return g.launch_s + np.maximum(compute, self.memory_bytes_s(nbytes, kind))

    def gemm_first_call_s(self, m: Num, n: Num, k: Num, fmt: DType | str = DType.BF16) -> Num:
        """The once-per-shape cost an [m, k] @ [k, n] GEMM pays the first time it runs (a CPU's oneDNN creates its
        primitive for the new shape, then reuses it), on the engine's kernel path: per call + per input element +
        per weight element; 0 where the calibration did not measure it (``GemmParams.first_call``)."""
        coef = self.params.gemm.first_call.get(self.gemm_table_key(fmt)[0]) if self.params.gemm.first_call else None
        m, n, k = (np.asarray(x, float) for x in (m, n, k))
        if coef is None:
            return 0.0 * m
        return coef[0] + coef[1] * m * k + coef[2] * n * k

    def gemm_table_key(self, fmt: DType | str) -> tuple[str, str]:
        """(residual-table key, memory kind) of a GEMM in ``fmt`` on the kernel path the engine runs
        (``GemmParams.path``). A path other than the main one must have been timed by the calibration in that
        format: pricing it as torch's matmul would be the error this path exists to remove."""
        g, fmt_key = self.params.gemm, DType(fmt).value
        if not g.path or g.path == GemmPath.TORCH:
            return fmt_key, "gemm"
        key = f"{fmt_key}@{g.path}"
        if key not in (g.table or {}):
            raise SpecError("calibration", f"{self.name} has no {fmt_key} GEMM timings on the {g.path} path, which "
                            "the engine runs its linears on",
                            "time it here: capsim calibrate --ops gemm_packed --out FILE (keeps FILE's other "
                            "benches), then use FILE")
        return key, f"gemm@{g.path}" if f"gemm@{g.path}" in self.params.memory.kind_scale else "gemm"

    def attention_s(self, flops: Num, nbytes: Num, query_rows: Num, fmt: DType | str = DType.BF16,
                    backward: bool = False, kv_per_seq: Num | None = None, kernel: str = "",
                    causal: bool = False) -> Num:
        """A fused attention kernel: matmul FLOPs at the attention efficiency, or its memory traffic (at the
        "attention" bandwidth where the calibration measured one). ``query_rows`` (query tokens x heads) is the
        parallel work the kernel spreads over the chip; ``kv_per_seq`` (keys per sequence) the length of its inner
        loop, read by calibrations whose curve has a second half size; ``kernel`` the kernel run where the
        calibration holds its own rate (``AttentionParams.kernels``; "" the main curve); ``causal`` whether it runs
        under the causal mask (read where the calibration holds that kernel's causal rate)."""
        a = self.params.attention
        sizes = (query_rows,) if kv_per_seq is None else (query_rows, kv_per_seq)
        forward, backward_curve = a.curves(kernel, causal)
        eff = curve_value(backward_curve if backward else forward, *sizes)
        body = np.maximum(flops / (self.peak(fmt) * eff), self.memory_bytes_s(nbytes, "attention"))
        return a.launch_s + body * self.attention_factor(flops, nbytes, query_rows, kv_per_seq, fmt, backward)

    def attention_factor(self, flops: Num, nbytes: Num, query_rows: Num, kv_per_seq: Num | None,
                         fmt: DType | str = DType.BF16, backward: bool = False) -> Num:
        """The measured residual multiplier of an attention kernel's roofline body (1 where the calibration holds
        none): a grid over query rows, keys per sequence and FLOPs per byte, the format's own grid first."""
        table, which = self.params.attention.table or {}, "bwd" if backward else "fwd"
        entry = table.get(f"{which}@{DType(fmt).value}") or table.get(which)
        if entry is None or kv_per_seq is None:
            return 1.0
        sizes = {"log2_rows": query_rows, "log2_kv": kv_per_seq,
                 "log2_intensity": np.asarray(flops, float) / np.maximum(nbytes, 1e-30)}
        axes = tuple(k for k in sizes if k in entry)
        return _grid_factor(entry, axes, tuple(sizes[k] for k in axes))

    def memory_bytes_s(self, nbytes: Num, kind: str = "") -> Num:
        mem = self.params.memory
        nbytes = np.asarray(nbytes, float)
        bw = mem.bandwidth_bytes_per_s * mem.kind_scale.get(kind, 1.0)
        if mem.half_bytes:
            bw = bw * nbytes / (nbytes + mem.half_bytes)
        return nbytes / np.maximum(bw, 1e-30)

    def memory_s(self, nbytes: Num, kind: str = "") -> Num:
        """A memory-bound kernel moving ``nbytes`` (times a measured residual for ``kind`` where one exists)."""
        mem = self.params.memory
        entry = (mem.table or {}).get(kind)
        if entry is None:
            return mem.launch_s + self.memory_bytes_s(nbytes, kind)
        # Below the smallest measured size a kernel costs what that size cost (its fixed overhead), not less.
        nbytes = np.maximum(np.asarray(nbytes, float), 2.0 ** entry["log2_bytes"][0])
        return mem.launch_s + self.memory_bytes_s(nbytes, kind) * _grid_factor(entry, ("log2_bytes",), (nbytes,))

    def memory_kind(self, op: object) -> str:
        """The most specific memory key the calibration holds for ``op`` (``categories.candidate_keys``: e.g.
        ``norm:rmsnorm.bwd``, or ``norm:rmsnorm@bf16`` where the calibration measured the op's format apart from
        its main one), else its plain category (priced at the streaming bandwidth)."""
        mem = self.params.memory
        known = set(mem.kind_scale) | set(mem.table or {})
        dt = getattr(op, "dtype", None)
        keys = candidate_keys(op.name, op.kind.value, getattr(op, "impl", ""), DType(dt).value if dt else "")
        return next((k for k in keys if k in known), keys[-1])

    @staticmethod
    def category(op: object) -> str:
        """The memory-bound category whose achieved bandwidth times ``op`` (``categories.Category``): norm,
        softmax, activation, rope, embedding, optimizer, or stream (plain elementwise). A category the
        calibration did not measure runs at its streaming bandwidth."""
        return category_of(op.name, op.kind.value).value

    def op_s(self, op: object, accumulation: str = "") -> Num:
        """Time of one :class:`capsim.analytic.ops.Op` (all its ``count`` instances), times its ``share`` of the
        layers (an op only some layers run, such as Gemma's global attention, costs that fraction per layer).
        ``accumulation``: a GEMM's accumulation mode (:meth:`gemm_s`)."""
        kind, share = op.kind.value, getattr(op, "share", 1.0)
        if kind == "gemm":
            m, n, k = op.shape
            return share * self.gemm_s(m, n, k, op.dtype, op.count, op.bytes * op.count, accumulation)
        if kind == "attention":
            seqs, heads, q, kv, _d = op.shape
            return share * self.attention_s(op.flops * op.count, op.bytes * op.count, np.asarray(q, float) * heads,
                                            op.dtype, op.name.endswith(".bwd"),
                                            np.asarray(kv, float) / np.maximum(seqs, 1e-30), op.impl, op.causal)
        return share * self.memory_s(op.bytes * op.count, self.memory_kind(op))

    def ops_s(self, ops: Iterable[object]) -> Num:
        total: Num = 0.0
        for op in ops:
            total = total + self.op_s(op)
        return total

    # --- communication -------------------------------------------------------------------------
    def link(self, collective: Collective | str, group: int, tier: Tier | str = Tier.INTRA) -> Link | tuple[Link, ...]:
        """The alpha-beta pair(s) for a collective at a group size.

        Lookup: the collective's own entry, else (for a collective the calibration did not measure) the tier's
        all-reduce entry, else the tier's "*" fallback; within an entry the exact group size, else the nearest
        measured one (in log2). Reusing the all-reduce link prices reduce-scatter, all-gather and all-to-all at the
        all-reduce's bus bandwidth, as NCCL's rings move each at (nccl-tests doc/PERFORMANCE.md); the bus bytes
        still come from the requested collective's own factor.
        """
        tiers = self.params.comm.links
        tier = Tier(tier).value
        if tier not in tiers:
            raise SpecError("calibration", f"{self.name} has no {tier}-node link figures",
                            "use a calibration that measured or states that tier")
        colls = tiers[tier]
        coll = Collective(collective).value
        entry = colls.get(coll) or (colls.get("all_reduce") if coll != "send_recv" else None) or colls.get("*")
        if not entry:
            raise SpecError("calibration", f"{self.name} has no {coll} figures on the {tier}-node tier",
                            "use a calibration that measured it")
        key = str(int(group))
        if key in entry:
            return entry[key]
        sizes = sorted(int(s) for s in entry if s != "*")
        if "*" in entry or not sizes:
            return entry["*"]
        nearest = min(sizes, key=lambda s: abs(np.log2(s) - np.log2(max(group, 1))))
        return entry[str(nearest)]

    def collective_s(self, collective: Collective | str, nbytes: Num, group: Num,
                     tier: Tier | str = Tier.INTRA) -> Num:
        """One collective over a buffer of ``nbytes`` among ``group`` ranks on one link tier; 0 for one rank."""
        coll = Collective(collective)
        group_arr = np.asarray(group)
        out = np.zeros(np.broadcast(np.asarray(nbytes), group_arr).shape)
        for g in np.unique(group_arr):
            if g <= 1:
                continue
            links = self.link(coll, int(g), tier)
            bus_bytes = np.asarray(nbytes, float) * coll.bus_factor(float(g))
            t = np.min([lk.alpha_s + bus_bytes / lk.bus_bw_bytes_per_s
                        for lk in (links if isinstance(links, tuple) else (links,))], axis=0)
            out = np.where(group_arr == g, t, out)
        return out if out.shape else float(out)


def _grid_factor(entry: dict, axes: tuple[str, ...], sizes: tuple[Num, ...]) -> Num:
    """Multiplier from a measured residual grid over log2 sizes, linear in log space, clamped to the grid."""
    grids = [np.asarray(entry[a], float) for a in axes]
    values = np.asarray(entry["log_factor"], float)
    x = [np.clip(np.log2(np.maximum(np.asarray(s, float), 1e-30)), g[0], g[-1]) for s, g in zip(sizes, grids, strict=True)]
    if len(axes) == 1:
        return np.exp(np.interp(x[0], grids[0], values))
    from scipy.interpolate import RegularGridInterpolator

    pts = np.stack(np.broadcast_arrays(*x), axis=-1)
    interp = RegularGridInterpolator(grids, values, bounds_error=False, fill_value=None)
    return np.exp(interp(pts.reshape(-1, len(axes))).reshape(pts.shape[:-1]))


def _table_factor(table: dict, fmt: str, m: Num, n: Num, k: Num) -> Num:
    """Multiplier from a measured residual grid (log2 m, n, k), linear in log space, clamped to the grid."""
    from scipy.interpolate import RegularGridInterpolator

    entry = table.get(fmt) or table.get("*")
    if entry is None:
        return 1.0
    axes = [np.asarray(entry[a], float) for a in ("log2_m", "log2_n", "log2_k")]
    values = np.asarray(entry["log_factor"], float)
    interp = RegularGridInterpolator(axes, values, bounds_error=False, fill_value=None)
    pts = np.stack(np.broadcast_arrays(*(np.clip(np.log2(np.maximum(np.asarray(x, float), 1)), a[0], a[-1])
                                         for x, a in zip((m, n, k), axes, strict=True))), axis=-1)
    return np.exp(interp(pts.reshape(-1, 3)).reshape(pts.shape[:-1]))


def require_perf(perf: object) -> None:
    """The pure layers take a device model, never a calibration name they would load themselves."""
    if not isinstance(perf, Perf):
        raise SpecError("perf", f"expected a capsim.perf.Perf, got {type(perf).__name__} {perf!r:.60}",
                        "load one with capsim.calibration.perf_for(accelerator, calibration)")
