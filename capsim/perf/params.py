"""The numbers the device model reads: what a calibration file's ``fitted`` section holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Collective(StrEnum):
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    SEND_RECV = "send_recv"

    def bus_factor(self, group: Any) -> Any:
        """Bytes each rank moves per byte of buffer, as nccl-tests' busbw (NCCL docs, PERFORMANCE.md):
        2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter and all-to-all, 1 for send/recv."""
        if self is Collective.SEND_RECV:
            return 1.0 + 0.0 * group
        frac = (group - 1.0) / group
        return 2.0 * frac if self is Collective.ALL_REDUCE else frac


class Tier(StrEnum):
    INTRA = "intra"  # inside a node (NVLink/NVSwitch, PCIe, shared memory)
    INTER = "inter"  # across nodes (InfiniBand, RoCE, Ethernet)


@dataclass(frozen=True)
class Curve:
    """Efficiency that saturates with size: ``peak_fraction * prod(x / (x + half))`` over the given sizes."""

    peak_fraction: float
    half_sizes: tuple[float, ...] = ()


@dataclass(frozen=True)
class GemmParams:
    efficiency: Curve  # over (m, n, k)
    launch_s: float  # fixed cost of one kernel (launch + tail)
    # Per-dtype multipliers on efficiency where a format runs differently (e.g. fp32 on CPUs).
    dtype_scale: dict[str, float] = field(default_factory=dict)
    # Optional measured residuals: log2-grid of (m, n, k) -> time multiplier, interpolated (measured files); keyed
    # by format, and "format@path" for another kernel path the calibration timed (capsim.specs.engine.GemmPath).
    table: dict[str, Any] | None = None
    # The kernel path an engine runs its linears on (set by capsim.analytic.serving.engine_perf from the engine
    # profile, never by a calibration file): "" prices the calibration's main path.
    path: str = ""
    # Measured once-per-shape cost of a GEMM's first call (a CPU's oneDNN creates and caches a primitive per problem
    # shape): residual-table key -> (s per call, s per element of the [m, k] input, s per element of the [k, n]
    # weight), fitted to first call less steady state (measured files).
    first_call: dict[str, tuple[float, float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionParams:
    forward: Curve  # fraction of matmul peak over (query rows,) or (query rows, keys per sequence)
    backward: Curve
    launch_s: float
    # Optional measured residuals: "fwd"/"bwd" -> log2 grid of (query rows, keys per sequence) -> time multiplier.
    table: dict[str, Any] | None = None
    # Optional curves of other attention kernels than the main one (AttentionImpl value, or "value@causal" for its
    # rate under the causal mask where that was measured apart -> {"forward": Curve, "backward": Curve}), where the
    # device runs a kernel at a different rate (FlashAttention-2 on Hopper); "@causal" the main kernel's causal rate
    # (cuDNN on Hopper).
    kernels: dict[str, dict[str, Curve]] | None = None

    def curves(self, kernel: str = "", causal: bool = False) -> tuple[Curve, Curve]:
        """(forward, backward) curves of ``kernel``: its own where the calibration holds them (its causal ones for a
        causal kernel where it holds those), else the main ones."""
        kernels = self.kernels or {}
        own = (kernels.get(f"{kernel}@causal") if causal else None) or kernels.get(kernel)
        return (own["forward"], own["backward"]) if own else (self.forward, self.backward)


@dataclass(frozen=True)
class MemoryParams:
    bandwidth_bytes_per_s: float  # achieved streaming bandwidth (large tensors)
    launch_s: float
    half_bytes: float = 0.0  # tensor size at which achieved bandwidth halves (small-op inefficiency)
    kind_scale: dict[str, float] = field(default_factory=dict)  # per op kind/name bandwidth multipliers
    # Optional measured residuals per kind: {"log2_bytes": [...], "log_factor": [...]} (caches, page faults).
    table: dict[str, Any] | None = None


@dataclass(frozen=True)
class Link:
    """Alpha-beta cost of one collective at one group size: ``alpha_s + bus_bytes / bus_bw_bytes_per_s``."""

    alpha_s: float
    bus_bw_bytes_per_s: float


@dataclass(frozen=True)
class CommParams:
    # tier -> collective -> group size (as str) -> Link, or a tuple of Links (one per NCCL protocol; the
    # collective takes the fastest); key "*" holds the fallback for any collective or group size
    links: dict[str, dict[str, dict[str, Link | tuple[Link, ...]]]]


@dataclass(frozen=True)
class DeviceParams:
    """Everything capsim.perf needs to time ops and collectives on one kind of device."""

    name: str  # the calibration's name, carried into every prediction
    kind: str  # "datasheet", "measured" or "profile"
    device: str  # accelerator name
    peak_flops_per_s: dict[str, float]  # per math format key (fp32, tf32, bf16, fp8, int8)
    gemm: GemmParams
    attention: AttentionParams
    memory: MemoryParams
    comm: CommParams
    memory_bytes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for part in ("attention", "memory"):  # optional residual tables appear only where measured
            if d[part].get("table") is None:
                d[part].pop("table", None)
        if d["attention"].get("kernels") is None:
            d["attention"].pop("kernels", None)
        if not d["gemm"]["path"]:  # an engine's choice (engine_perf), never a calibration file's
            d["gemm"].pop("path")
        if not d["gemm"]["first_call"]:  # only where measured
            d["gemm"].pop("first_call")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceParams:
        def curve(c: dict[str, Any]) -> Curve:
            return Curve(float(c["peak_fraction"]), tuple(float(x) for x in c.get("half_sizes", ())))

        g, a, m = d["gemm"], d["attention"], d["memory"]
        def link(v: Any) -> Link | tuple[Link, ...]:
            if isinstance(v, list | tuple):
                return tuple(Link(float(x["alpha_s"]), float(x["bus_bw_bytes_per_s"])) for x in v)
            return Link(float(v["alpha_s"]), float(v["bus_bw_bytes_per_s"]))

        links = {tier: {coll: {grp: link(v) for grp, v in groups.items()} for coll, groups in colls.items()}
                 for tier, colls in d["comm"]["links"].items()}
        return cls(
            name=d["name"], kind=d["kind"], device=d["device"],
            peak_flops_per_s={k: float(v) for k, v in d["peak_flops_per_s"].items()},
            gemm=GemmParams(curve(g["efficiency"]), float(g["launch_s"]), dict(g.get("dtype_scale") or {}),
                            g.get("table"), str(g.get("path", "")),
                            {k: (float(v[0]), float(v[1]), float(v[2]))
                             for k, v in (g.get("first_call") or {}).items()}),
            attention=AttentionParams(curve(a["forward"]), curve(a["backward"]), float(a["launch_s"]), a.get("table"),
                                      {k: {half: curve(c) for half, c in v.items()}
                                       for k, v in a["kernels"].items()} if a.get("kernels") else None),
            memory=MemoryParams(float(m["bandwidth_bytes_per_s"]), float(m["launch_s"]),
                                float(m.get("half_bytes", 0.0)), dict(m.get("kind_scale") or {}), m.get("table")),
            comm=CommParams(links), memory_bytes=float(d.get("memory_bytes", 0.0)))
