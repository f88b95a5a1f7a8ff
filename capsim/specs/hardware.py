"""Accelerators, nodes and clusters: datasheet rates, memory, links, power and price."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

from capsim.errors import SpecError, require
from capsim.specs.precision import DType, dtype, require_block_scaling

# The kinds of host CPU the catalog names (Accelerator.host_cpu) and engine profiles key a host-time bound by
# (engines.yaml cpu_bound): grace = NVIDIA's Arm Neoverse V2 CPU joined to the GPUs by NVLink-C2C (GH200, GB200, GB300).
HOST_CPUS = ("grace",)


class Topology(StrEnum):
    """How the GPUs of a node are wired, which sets how a collective uses the links."""

    SWITCH = "switch"  # NVSwitch / full crossbar: every GPU talks to every other at full link rate
    MESH = "mesh"  # point-to-point mesh, cube-mesh, torus or bridges: rings run over the links
    PCIE = "pcie"  # through the PCIe host bridge


@dataclass(frozen=True)
class Peaks:
    """Dense peak math rates in FLOP/s (int8 in OP/s); None where the datasheet gives none."""

    fp32: float | None = None
    tf32: float | None = None
    bf16: float | None = None  # also the fp16 tensor-core rate
    fp8: float | None = None  # also MXFP8's rate
    fp4: float | None = None  # NVFP4 (Blackwell's block-scaled FP4 tensor cores)
    int8: float | None = None

    def of(self, fmt: DType | str) -> float | None:
        key = dtype(fmt).peak_key
        if key == "int4":
            return None
        return getattr(self, key)


@dataclass(frozen=True)
class Accelerator:
    """One accelerator's datasheet facts (dense peaks, SI units)."""

    name: str
    peaks: Peaks
    # Device memory the CUDA/ROCm runtime reports (cudaMemGetInfo total = torch total_memory), bytes: what PyTorch
    # allocates from and vLLM sizes its KV cache against; binary on real cards (80 GB H100: 79.11 GiB). See
    # accelerators.yaml's header; memory_source cites the figure.
    memory_bytes: float
    memory_bw_bytes_per_s: float  # peak HBM/GDDR bandwidth
    intra_node_link: str  # the datasheet's description of the in-node interconnect
    intra_node_bw_bytes_per_s: float | None  # per GPU, one direction (half the datasheet's bidirectional figure)
    gpus_per_node: int
    inter_node_bw_bytes_per_s: float | None = None  # per GPU, one direction; None where unknown
    # To the host CPU's memory (NVLink-C2C, PCIe), per GPU, one direction: what CPU activation offloading moves
    # over; None where the catalog does not state it
    host_link_bw_bytes_per_s: float | None = None
    # The kind of host CPU the part is always built with (one of HOST_CPUS), where its spec names one (a Grace-
    # Blackwell superchip); None where the host is the buyer's choice or unknown (an HGX/DGX board with x86 hosts).
    # host_cpu_source cites it. Read by reports only (the serving validation's host-time band), never by a price.
    host_cpu: str | None = None
    host_cpu_source: str = ""
    tdp_w: float | None = None
    source: str = ""
    unconfirmed: tuple[str, ...] = ()  # datasheet fields not confirmed from a primary source
    memory_source: str = ""  # where memory_bytes comes from (a device report, cited; or the datasheet, said so)
    price_usd_per_hour: float | None = None  # per GPU, on demand; None where the catalog has no price
    # Where a source gives the peaks only as a range: its upper end (``peaks`` is the lower end, the one priced);
    # a validation row on such a part reports the band between the two. None for a part with published peaks.
    peaks_high: Peaks | None = None
    # Streaming multiprocessors (CUDA's multiProcessorCount) where the catalog states them (sm_source cites the
    # figure): what a kernel's thread blocks are spread over (capsim.analytic.paged_grid). None: not stated.
    sms: int | None = None
    sm_source: str = ""
    aliases: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        require(self.host_cpu is None or self.host_cpu in HOST_CPUS, f"accelerator {self.name}.host_cpu",
                f"unknown host CPU {self.host_cpu!r}", f"use one of {', '.join(HOST_CPUS)}, or leave it out (unknown)")
        require(self.host_cpu is None or bool(self.host_cpu_source), f"accelerator {self.name}.host_cpu_source",
                "a host CPU needs its source", "cite the spec that names it")

    @property
    def topology(self) -> Topology:
        text = self.intra_node_link.lower()
        if "switch" in text or "domain" in text:
            return Topology.SWITCH
        if text.startswith("pcie"):
            return Topology.PCIE
        return Topology.MESH

    def peak_flops_per_s(self, fmt: DType | str) -> float:
        """Peak rate for math in ``fmt``; a clear error where the chip has no such rate."""
        require_block_scaling(fmt, bool(self.peaks.fp4), self.name)
        value = self.peaks.of(fmt)
        if value is None or value <= 0:
            have = [k for k in ("fp32", "tf32", "bf16", "fp8", "fp4", "int8") if getattr(self.peaks, k)]
            raise SpecError("precision.compute", f"{self.name} has no {fmt} rate in its datasheet",
                            f"use one of {', '.join(have)}")
        return value

    def with_(self, **changes: object) -> Accelerator:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["topology"] = self.topology.value
        out["aliases"] = list(self.aliases)
        out["unconfirmed"] = list(self.unconfirmed)
        return out


@dataclass(frozen=True)
class Node:
    """A server: several accelerators joined by the intra-node link."""

    accelerator: Accelerator
    gpus: int
    intra_bw_bytes_per_s: float
    topology: Topology

    @classmethod
    def of(cls, accelerator: Accelerator, gpus: int | None = None) -> Node:
        return cls(accelerator, gpus or accelerator.gpus_per_node, accelerator.intra_node_bw_bytes_per_s,
                   accelerator.topology)


@dataclass(frozen=True)
class Cluster:
    """``num_gpus`` accelerators in nodes of ``gpus_per_node``; overrides replace datasheet links and price."""

    accelerator: Accelerator
    num_gpus: int
    gpus_per_node: int | None = None  # None = the accelerator's usual node size
    intra_node_bw_bytes_per_s: float | None = None  # None = datasheet
    inter_node_bw_bytes_per_s: float | None = None  # None = datasheet
    price_usd_per_gpu_hour: float | None = None  # None = catalog price

    def __post_init__(self) -> None:
        require(isinstance(self.num_gpus, int) and self.num_gpus > 0, "num_gpus",
                f"must be a positive integer, got {self.num_gpus!r}")
        if self.gpus_per_node is None:
            object.__setattr__(self, "gpus_per_node", self.accelerator.gpus_per_node)
        require(self.gpus_per_node > 0, "gpus_per_node", "must be positive")
        if self.intra_node_bw_bytes_per_s is None:
            object.__setattr__(self, "intra_node_bw_bytes_per_s", self.accelerator.intra_node_bw_bytes_per_s)
        if self.inter_node_bw_bytes_per_s is None:
            object.__setattr__(self, "inter_node_bw_bytes_per_s", self.accelerator.inter_node_bw_bytes_per_s)
        if min(self.num_gpus, self.gpus_per_node) > 1:
            require(self.intra_node_bw_bytes_per_s is not None and self.intra_node_bw_bytes_per_s > 0,
                    "intra_node_bw", f"{self.accelerator.name} has no intra-node link bandwidth in the catalog",
                    "give the link's per-GPU GB/s")
        if self.num_gpus > self.gpus_per_node:
            require(self.inter_node_bw_bytes_per_s is not None and self.inter_node_bw_bytes_per_s > 0,
                    "inter_node_bw", f"{self.accelerator.name} has no inter-node bandwidth in the catalog and "
                    f"{self.num_gpus} GPUs span {self.num_nodes} nodes", "give the network's per-GPU GB/s")
        if self.price_usd_per_gpu_hour is None:
            object.__setattr__(self, "price_usd_per_gpu_hour", self.accelerator.price_usd_per_hour)

    @property
    def num_nodes(self) -> int:
        return math.ceil(self.num_gpus / self.gpus_per_node)

    @property
    def node(self) -> Node:
        return Node(self.accelerator, min(self.gpus_per_node, self.num_gpus), self.intra_node_bw_bytes_per_s,
                    self.accelerator.topology)

    @property
    def price_usd_per_hour(self) -> float:
        """The whole cluster's hourly price; NaN where no price is known."""
        price = self.price_usd_per_gpu_hour
        return float("nan") if price is None else price * self.num_gpus

    @property
    def power_w(self) -> float:
        """Accelerator board power at TDP (host, network and cooling excluded); NaN where unknown."""
        tdp = self.accelerator.tdp_w
        return float("nan") if tdp is None else tdp * self.num_gpus

    def with_(self, **changes: object) -> Cluster:
        return replace(self, **changes)
