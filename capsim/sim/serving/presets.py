"""Workload presets and the one function that turns a workload description into requests.

Where each preset's numbers come from is stated next to it. The seed's three scenarios (customer service,
personalized recommendation, RAG question answering) have no published traces; their lengths are assumptions
anchored on the public sources named, and their SLOs follow DistServe's targets (Zhong et al., OSDI 2024,
Table 1: chatbot TTFT 0.25-4 s and TPOT 0.1-0.2 s by model size; summarization TTFT 15 s, TPOT 0.15 s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from capsim.data.loaders import load_trace
from capsim.errors import SpecError, UnknownNameError, require
from capsim.sim.serving.budget import WorkEstimate, estimate_work
from capsim.sim.serving.workload import ArrivalKind, Lengths, Workload, diurnal, renewal


@dataclass(frozen=True)
class Preset:
    """A named workload: lengths, default arrivals and SLOs, and the source of every number."""

    name: str
    description: str
    lengths: Lengths | str  # a distribution, or a shipped trace name (replayed or sampled)
    rate_rps: float | None  # default open-loop rate; None for trace replays (the trace's own arrivals)
    slo_ttft_s: float
    slo_tpot_s: float
    source: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("chatbot", "customer-service chatbot: a system prompt with policies plus a few turns of history",
           Lengths.lognormal(1000, 1.0, 200, 0.8), 1.0, 1.0, 0.1,
           "Assumption anchored on the Azure LLM inference trace 2023, conversation service (Patel et al., "
           "Splitwise, ISCA 2024, Fig. 3: median prompt ~1020, output ~130 tokens; the shipped azure-conv trace "
           "has means 1155 and 211). SLOs: DistServe chatbot targets (TTFT 0.25-2.5 s, TPOT 0.1-0.15 s); 1 s "
           "and 0.1 s taken here."),
    Preset("recommendation", "personalized recommendation assistant: user profile and candidate items in the "
           "prompt, a short ranked list out", Lengths.lognormal(1800, 0.5, 120, 0.5), 1.0, 1.0, 0.1,
           "Assumption: a profile (~300 tokens), ~30 candidate items of ~50 tokens and instructions; an answer "
           "of ~5 items with one-line reasons. No public trace; lengths are stated, not measured."),
    Preset("rag-qa", "question answering over retrieved documents (RAG): long prompts, medium answers",
           Lengths.lognormal(3000, 0.35, 250, 0.6), 1.0, 2.0, 0.1,
           "Assumption anchored on common retriever defaults: LlamaIndex chunk_size 1024 tokens with top-k 2, "
           "LangChain RetrievalQA k=4 chunks; ~2-4 chunks plus the question. SLOs: between DistServe's chatbot "
           "and summarization targets."),
    Preset("azure-conv", "Azure LLM inference trace 2023, conversation service (19,366 requests, 1 hour)",
           "azure-conv", None, 2.5, 0.15,
           "Replayed request by request (arrivals and lengths) from the Splitwise release of the Azure trace "
           "(capsim/data/traces/splitwise_conv.csv.gz). SLOs: DistServe chatbot targets for a 66B model."),
    Preset("azure-code", "Azure LLM inference trace 2023, coding service (8,819 requests, 1 hour)",
           "azure-code", None, 0.125, 0.2,
           "Replayed from the Splitwise release of the Azure trace (capsim/data/traces/splitwise_code.csv.gz). "
           "SLOs: DistServe code-completion targets (TTFT 0.125 s, TPOT 0.2 s)."),
    Preset("arxiv-summarization", "arXiv summarization (lengths only, Llama-2 tokenizer; 28,257 requests)",
           "arxiv-summarization", 1.0, 15.0, 0.15,
           "Lengths sampled jointly from Vidur's arxiv_summarization trace "
           "(capsim/data/traces/arxiv_summarization.csv.gz); arrivals Poisson at the given rate. SLOs: "
           "DistServe summarization targets (TTFT 15 s, TPOT 0.15 s)."),
)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UnknownNameError("workload", name, list(PRESETS))
    return PRESETS[name]


@dataclass(frozen=True)
class WorkloadSpec:
    """Everything that describes a workload: arrivals, lengths, size and seed."""

    arrival: ArrivalKind = ArrivalKind.POISSON
    lengths: Lengths | None = None
    trace: str | None = None  # a shipped trace name or a CSV path: replayed (arrivals) or sampled (lengths)
    rate_rps: float | None = None
    cv: float = 1.0  # gamma arrivals
    diurnal_rates_rps: tuple[float, ...] = ()  # diurnal: rates over equal bins of one period
    period_s: float = 86400.0
    clients: int = 0  # closed loop
    requests: int | None = None
    duration_s: float | None = None
    time_scale: float = 1.0  # trace replay: arrival times multiplied by this (0.5 = twice the rate)
    seed: int = 0
    name: str = "custom"
    # A system prompt every request starts with: the first min(this, prompt) tokens of every prompt are the same
    # (one prefix group), which an engine with prefix caching computes once per replica while it stays cached.
    shared_prefix_tokens: int = 0

    def expected_requests(self) -> float | None:
        """How many requests :func:`build_workload` draws, known before drawing them (None for a trace replay:
        the trace's rows bound it)."""
        kind = ArrivalKind(self.arrival)
        if kind is ArrivalKind.TRACE:
            return None
        if self.requests is not None or kind in (ArrivalKind.CLOSED, ArrivalKind.BATCH):
            return float(self.requests or 0)
        rate = float(np.mean(self.diurnal_rates_rps)) if kind is ArrivalKind.DIURNAL and self.diurnal_rates_rps \
            else self.rate_rps
        if rate is None or self.duration_s is None:
            return None  # build_workload names what is missing
        return float(rate) * float(self.duration_s)

    def estimate(self, replicas: int, step_tokens: int, fast: bool = True) -> WorkEstimate | None:
        """The simulation's events and memory (capsim.sim.serving.budget), from the spec alone; lengths drawn
        from a trace count as one prompt step and one output token (a lower bound)."""
        n = self.expected_requests()
        if n is None:
            return None
        prompt, output = self.lengths.mean() if self.lengths is not None else (1.0, 1.0)
        return estimate_work(n, replicas, prompt, output, step_tokens, fast)


def build_workload(spec: WorkloadSpec) -> Workload:
    """Draw the requests of ``spec`` (seeded, vectorised), with their shared system prompt where it has one."""
    require(spec.shared_prefix_tokens >= 0, "shared_prefix_tokens", f"must be >= 0, got {spec.shared_prefix_tokens}")
    wl = _draw(spec)
    if not spec.shared_prefix_tokens:
        return wl
    return replace(wl, prefix_group=np.zeros(wl.size, np.int64),
                   prefix_tokens=np.minimum(wl.prompt_tokens, spec.shared_prefix_tokens).astype(np.int64))


def _draw(spec: WorkloadSpec) -> Workload:
    rng = np.random.default_rng(spec.seed)
    kind = ArrivalKind(spec.arrival)
    if kind is ArrivalKind.TRACE:
        return _replay(spec)
    lengths = spec.lengths
    if lengths is None:
        require(spec.trace is not None, "lengths", "no length distribution and no trace",
                "give --prompt/--output lengths, a preset, or --trace")
        lengths = Lengths.empirical(load_trace(spec.trace))
    if kind in (ArrivalKind.CLOSED, ArrivalKind.BATCH):
        require(spec.requests is not None, "--requests", f"{kind.value} arrivals need a request count")
        require(kind is ArrivalKind.BATCH or spec.clients >= 1, "--clients", "a closed loop needs clients >= 1")
        p, o = lengths.draw(spec.requests, rng)
        arrival = None if kind is ArrivalKind.CLOSED else np.zeros(spec.requests)
        return Workload(spec.name, p, o, arrival, spec.clients)
    if kind is ArrivalKind.DIURNAL:
        t = diurnal(np.asarray(spec.diurnal_rates_rps), spec.period_s, spec.requests, spec.duration_s, rng)
    else:
        require(spec.rate_rps is not None, "--rate", f"{kind.value} arrivals need a rate")
        t = renewal(spec.rate_rps, spec.requests, spec.duration_s, rng, spec.cv if kind is ArrivalKind.GAMMA
                    else 1.0)
    p, o = lengths.draw(len(t), rng)
    return Workload(spec.name, p, o, t)


def _replay(spec: WorkloadSpec) -> Workload:
    require(spec.trace is not None, "--trace", "trace arrivals need a trace")
    df = load_trace(spec.trace)
    if "arrived_at" not in df.columns:
        raise SpecError("--trace", f"{spec.trace} has lengths only (no arrived_at)",
                        "give --rate for Poisson arrivals with the trace's lengths")
    require(spec.time_scale > 0, "--time-scale", f"must be > 0, got {spec.time_scale}")
    t = (df["arrived_at"].to_numpy(float) - float(df["arrived_at"].iloc[0])) * spec.time_scale
    keep = np.ones(len(t), bool)
    if spec.duration_s is not None:
        keep &= t < spec.duration_s
    idx = np.flatnonzero(keep)[: spec.requests]
    return Workload(spec.name, df["prompt_tokens"].to_numpy()[idx], df["output_tokens"].to_numpy()[idx], t[idx])


def preset_spec(name: str, rate_rps: float | None = None, requests: int | None = None,
                duration_s: float | None = None, seed: int = 0) -> WorkloadSpec:
    """The WorkloadSpec of a preset (trace presets replay their arrivals unless a rate is given)."""
    p = get_preset(name)
    if isinstance(p.lengths, str):
        if p.rate_rps is None and rate_rps is None:
            return WorkloadSpec(ArrivalKind.TRACE, trace=p.lengths, requests=requests, duration_s=duration_s,
                                seed=seed, name=name)
        return WorkloadSpec(ArrivalKind.POISSON, trace=p.lengths, rate_rps=rate_rps or p.rate_rps,
                            requests=requests, duration_s=duration_s, seed=seed, name=name)
    if requests is None and duration_s is None:
        requests = 1000
    return WorkloadSpec(ArrivalKind.POISSON, lengths=p.lengths, rate_rps=rate_rps or p.rate_rps, requests=requests,
                        duration_s=duration_s, seed=seed, name=name)


__all__ = ["PRESETS", "Preset", "WorkloadSpec", "build_workload", "get_preset", "preset_spec"]
