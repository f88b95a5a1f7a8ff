"""The shipped engine-calibration suites of ``capsim validate bench --suite NAME``: each fits the engine's host
terms on some runs and scores only the others (cross-validation), next to the uncalibrated prediction (the engine
profile from facts).

A suite is a YAML file beside its data (``SUITES``) stating what the runs were measured on, as data: the model
(catalog name or a config.json beside the data), the device (a catalog accelerator with a calibration, or a
measured calibration), the engine, its release and the flags the runs used, and which runs to fit on and to check.
- ``distserve``: DistServe's vLLM 0.2.3 runs of OPT-13B on an A100 (per-request CSVs): fit on the 1 req/s run,
  check 1.5-4 req/s and the saturation rate; a note per checked run gives it fitted on itself (not a prediction),
  so a miss reads as the model's form or as the runs' own difference.
- ``splitwise``: Splitwise's profiled step times of Llama-2-70B (prompt batches and decode steps): fit on the TP2
  rows of each GPU, check its TP4 and TP8 rows; each checked row's note takes its prediction apart and its band
  spans the host dispatch per kernel the TP2 rows cannot tell apart; a note per GPU and checked TP gives the least
  worst-row error any host terms reach on those rows themselves (``minimax_floor``), a floor for every fit.
- ``vllm-cpu``: vLLM 0.32.0's CPU backend measured on this machine (benchmarks/vllm_cpu_bench.py): fit on the
  Poisson run at ``calibrate_on.fraction`` of the saturation rate, check every other run and the saturation.

A suite may list ``flag_variants`` (``[{flags, source}]``): launch flags no source tells apart from its own
``flags``. Each is a complete prediction (every run replayed with its flags, the engine's host terms fitted on
``calibrate_on`` again), and every row's ``band_low``/``band_high`` spans the point and the variants; the point's
rows and errors are the suite's flags alone. DistServe's lists its launcher's two earlier revisions (SOURCE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from capsim.analytic.serving import (
    DEFAULT_SAMPLING,
    IterationTime,
    StepShape,
    graph_batches,
    iteration_time,
    kernels_per_step,
)
from capsim.calibration import load_calibration
from capsim.calibration.device import calibrated_device, thread_counts
from capsim.calibration.engine_cal import (
    Deployment,
    calibrate_engine,
    fitted_profile,
    prior_terms,
    steps_observations,
)
from capsim.calibration.engine_fit import EngineFit, fit_engine_terms, minimax_floor
from capsim.data.bench import BenchRun, measured_summary, read_bench
from capsim.errors import SpecError
from capsim.sim.serving import engine_plan, kv_blocks
from capsim.specs.catalog import get_accelerator, get_model
from capsim.specs.engine import EngineProfile, engine_release
from capsim.specs.engine_flags import apply_flags, parse_flags
from capsim.specs.hf import from_hf_config
from capsim.validation.bench import padding_note, replay, run_rows
from capsim.validation.harness import Report, Row, attempt, data_path, read_csv

SUITES = {"distserve": ("distserve-vllm-opt13b", "suite.yaml"),
          "splitwise": ("validation", "engine-calibration", "splitwise.yaml"),
          "vllm-cpu": ("vllm-cpu", "suite.yaml")}
SATURATION_TTFT_S = 1.0  # the mean TTFT that marks saturation in a rate sweep (as capsim validate serving)


@dataclass(frozen=True)
class Suite:
    name: str
    folder: Path
    spec: dict[str, Any]


def load_suite(name: str) -> Suite:
    if name not in SUITES:
        raise SpecError("--suite", f"unknown suite {name!r}", f"use one of {', '.join(SUITES)}")
    path = data_path(*SUITES[name])
    return Suite(name, path.parent, yaml.safe_load(path.read_text()))


def deployment(spec: dict[str, Any], folder: Path, calibration: str | None = None) -> tuple[Deployment, list[str]]:
    """The deployment a suite (or a user's options, in the same keys) states, and what capsim noted."""
    model = from_hf_config(folder / spec["model_config"], spec.get("model_name")) if "model_config" in spec \
        else get_model(spec["model"])
    precision = str(spec["precision"])
    engine = engine_release(spec["engine"], str(spec["engine_version"]), spec.get("device_type", "gpu"))
    applied = apply_flags(engine, parse_flags(spec.get("flags", "")), precision)
    cal_name = calibration or spec["calibration"]
    if "accelerator" in spec:
        acc = get_accelerator(spec["accelerator"])
        perf = load_calibration(cal_name).perf()
    else:
        cal = load_calibration(cal_name)
        cores = int(cal.device.get("cores") or 1)
        threads = spec.get("threads") or max(cores - applied.engine.reserved_cores, 1)
        if threads not in thread_counts(cal):
            raise SpecError("calibration", f"{cal.name} has no setting at {threads} thread(s), the threads "
                            f"{applied.engine.name} computes with on {cores} cores",
                            f"run `capsim calibrate --threads {threads}`")
        dev = calibrated_device(cal, threads)
        acc, perf = dev.accelerator, dev.perf
    plan = engine_plan(applied.engine, model, acc, tp=int(spec.get("tp", 1)), dtype=precision, **applied.plan)
    return Deployment(model, plan, acc, perf, applied.engine), list(applied.notes)


def _runs(folder: Path, names: list[str]) -> list[BenchRun]:
    return [read_bench(folder / n) for n in names]


def _crossing(rates: list[float], ttft: list[float]) -> float:
    """The rate at which mean TTFT first reaches the mark (log-linear between neighbours)."""
    for (r0, t0), (r1, t1) in zip(zip(rates, ttft, strict=True), zip(rates[1:], ttft[1:], strict=True), strict=False):
        if t0 < SATURATION_TTFT_S <= t1:
            return r0 + (r1 - r0) * math.log(SATURATION_TTFT_S / t0) / math.log(t1 / t0)
    return math.nan


def saturation_rows(suite: str, runs: list[BenchRun], dep: Deployment, source: str) -> list[Row]:
    """Measured vs simulated saturation of a rate sweep: the rate where mean TTFT reaches 1 s, the simulated one
    from the longest run's requests rescaled to each rate (N = 100 x rate requests spanning N / rate seconds, as
    DistServe's runs were made)."""
    rated = sorted((run.size / max(run.arrival_s.max(), 1e-9), run) for run in runs if run.arrival_s is not None)
    measured = _crossing([r for r, _ in rated], [measured_summary(run)["ttft_mean_s"] for _, run in rated])
    base = max((run for _, run in rated), key=lambda r: r.size)
    gaps = np.diff(base.arrival_s, prepend=0.0)
    grid, sim = [round(x, 2) for x in np.arange(0.5, 12.01, 0.25)], []
    for rate in grid:
        n = min(int(round(100 * rate)), base.size)
        t = np.cumsum(gaps[:n])
        t = (t - t[0]) * (n / rate / max(t[-1] - t[0], 1e-9))
        sub = BenchRun("saturation", "", "", base.format, base.prompt_tokens[:n], base.output_tokens[:n],
                       base.ttft_s[:n], base.e2e_s[:n], t, t)
        sim.append(float(replay(sub, dep)[0].summary["ttft_mean_s"]))
        if sim[-1] >= 3 * SATURATION_TTFT_S:
            break
    return [Row(source, f"{suite} rate sweep", "saturation_rate", measured, _crossing(grid[:len(sim)], sim), "req/s",
                f"rate where mean TTFT reaches {SATURATION_TTFT_S:g} s, log-linear between runs")]


def _predictions(s: Suite, dep: Deployment, fit_runs: list[BenchRun], check_runs: list[BenchRun]
                 ) -> tuple[list[Row], Deployment, EngineFit]:
    """One complete prediction of the suite on ``dep``: every run uncalibrated, the engine's host terms fitted on the
    fit runs, the checked runs on the fitted engine, and the saturation rate of a rate sweep both ways."""
    rows: list[Row] = []
    for run in fit_runs + check_runs:
        rows += run_rows(run, dep, f"{s.name} uncalibrated")[0]
    profile, fit = calibrate_engine(fit_runs, dep, f"{dep.engine.name}-fitted")
    fitted = dep.with_engine(profile)
    label = f"{s.name} fitted on {'+'.join(r.name for r in fit_runs)}"
    for run in check_runs:
        rows += run_rows(run, fitted, label)[0]
    if s.spec.get("saturation") == "rate-sweep":
        rows += saturation_rows(s.name, fit_runs + check_runs, dep, f"{s.name} uncalibrated")
        rows += saturation_rows(s.name, fit_runs + check_runs, fitted, label)
    return rows, fitted, fit


def _bench_suite(s: Suite, calibration: str | None) -> Report:
    dep, notes = deployment(s.spec, s.folder, calibration)
    variants = flag_variants(s, calibration)  # refused before any replay
    fit_names, check_names = _split(s)
    fit_runs, check_runs = _runs(s.folder, fit_names), _runs(s.folder, check_names)
    rows, fitted, fit = _predictions(s, dep, fit_runs, check_runs)
    terms = fit.describe_terms() + (f" ({fit.describe_confounded()})" if fit.confounded else "")
    notes += [f"deployment: {dep.describe()}", f"fitted on {', '.join(fit_names)} (scored: only the others): "
              f"{terms}; condition {fit.condition:.3g}; rows {fit.rows}; rms relative residual "
              + ", ".join(f"{k} {v['all']:.3f}" for k, v in fit.residuals.items())]
    if variants:
        alt = [(v, vdep, *_predictions(s, vdep, fit_runs, check_runs)) for v, vdep in variants]
        rows = with_bands(rows, [vrows for _, _, vrows, _, _ in alt])
        notes.append(_variants_note(s, dep, fit, alt, fit_names))
    notes += [_self_fit_note(run, dep) for run in check_runs]
    notes += [r.describe() for r in fit_runs + check_runs]
    notes += [n for n in (padding_note(r, dep) for r in fit_runs + check_runs) if n]
    return Report(f"bench:{s.name}", dep.perf.name, tuple(rows), tuple(notes))


@dataclass(frozen=True)
class FlagVariant:
    """Another set of launch flags the runs may have been made with (a suite's ``flag_variants``), and the source
    that states it: the suite's point keeps its own flags, and its rows' bands span the point and every variant."""

    flags: str
    source: str


def flag_variants(s: Suite, calibration: str | None = None) -> list[tuple[FlagVariant, Deployment]]:
    """The suite's flag variants, each with its deployment (the suite's with the variant's flags in place of its
    own); a malformed variant, or one whose flags capsim refuses, stops the suite with the field at fault."""
    given = s.spec.get("flag_variants") or []
    if not isinstance(given, list):
        raise SpecError("flag_variants", f"{s.name}: {given!r} is not a list",
                        "give a list of {flags: ..., source: ...}")
    point = parse_flags(s.spec.get("flags", ""))
    out = []
    for i, v in enumerate(given):
        field = f"flag_variants[{i}]"
        if not isinstance(v, dict) or set(v) != {"flags", "source"} or \
                not all(isinstance(x, str) and x.strip() for x in v.values()):
            raise SpecError(field, f"{s.name}: {v!r} is not {{flags: ..., source: ...}}",
                            "give each variant its flags and the source that states them")
        try:
            if parse_flags(v["flags"]) == point:
                raise SpecError("flags", "the suite's own flags", "give only flags other than the point's")
            dep, _ = deployment({**s.spec, "flags": v["flags"]}, s.folder, calibration)
        except SpecError as e:
            where = "" if e.field == "flags" else f"{e.field}: "
            raise SpecError(f"{field}.flags", f"{s.name}: {where}{e.problem}", e.fix) from None
        out.append((FlagVariant(v["flags"].strip(), v["source"].strip()), dep))
    return out


def with_bands(rows: list[Row], alternatives: list[list[Row]]) -> list[Row]:
    """``rows`` with each priced row's band spanning its own prediction and those of the same row (source, case,
    metric) in every alternative that priced it; the predictions themselves unchanged."""
    by_key = [{(r.source, r.case, r.metric): r.predicted for r in alt} for alt in alternatives]
    out = []
    for r in rows:
        if r.predicted is None or not math.isfinite(r.predicted):
            out.append(r)
            continue
        got = [m.get((r.source, r.case, r.metric)) for m in by_key]
        values = [r.predicted, *(x for x in (r.band_low, r.band_high, *got) if x is not None and math.isfinite(x))]
        out.append(replace(r, band_low=min(values), band_high=max(values)))
    return out


def _blocks(dep: Deployment) -> str:
    n, err = attempt(kv_blocks, dep.model, dep.plan, dep.accelerator, dep.engine.for_model(dep.model))
    return f"KV cache {n:,} blocks" if err is None else f"KV cache not sized ({err})"


def _variants_note(s: Suite, dep: Deployment, fit: EngineFit, alt: list, fit_names: list[str]) -> str:
    """What the bands span: the point's flags and each variant's, their sources, KV caches and fitted terms."""
    def one(flags: str, source: str, d: Deployment, f: EngineFit, rows: list[Row] | None) -> str:
        failed = sum(r.predicted is None for r in rows or [])
        terms = "the same terms as the point" if rows is not None and f.terms == fit.terms else f.describe_terms()
        return (f"{flags} ({source}): {_blocks(d)}; fitted {terms}"
                + (f"; {failed} rows not priced (outside the band)" if failed else ""))

    return (f"band: the least and greatest prediction over {len(alt) + 1} sets of launch flags no source tells apart, "
            "each a complete prediction (its runs replayed with its flags, and the engine's host terms "
            f"({', '.join(fit.fitted)}) fitted again on {', '.join(fit_names)} with them, as the point's); point "
            + one(s.spec.get("flags", ""), s.spec.get("flags_source", "the suite's flags"), dep, fit, None) + "; "
            + "; ".join(f"variant {i + 1} " + one(v.flags, v.source, d, f, r) for i, (v, d, r, _, f) in enumerate(alt)))


def _self_fit(run: BenchRun, dep: Deployment) -> tuple[EngineFit, dict[str, float]]:
    """A checked run fitted on itself (not a prediction): the host terms it takes and the error of each metric
    replayed with them, which beside the fit run's terms say whether a miss is the model's form (it misses on its
    own run too) or a difference between the runs (it fits alone, with other terms)."""
    profile, fit = calibrate_engine([run], dep, f"{dep.engine.name}-self")
    return fit, {r.metric: r.error_pct for r in run_rows(run, dep.with_engine(profile), "self")[0]}


def _self_fit_note(run: BenchRun, dep: Deployment) -> str:
    try:
        fit, got = _self_fit(run, dep)
    except SpecError as e:
        return f"{run.name} fitted on itself: refused ({e})"
    return (f"{run.name} fitted on itself (not a prediction): {fit.describe_terms()}; "
            + ", ".join(f"{m} {got[m]:+.1f}%" for m in ("ttft_mean", "tpot_mean", "request_throughput") if m in got))


def _split(s: Suite) -> tuple[list[str], list[str]]:
    """(runs to fit on, runs to check): named in the suite, or by role in a measured folder's manifest."""
    on = s.spec["calibrate_on"]
    if isinstance(on, list):
        return list(on), list(s.spec["check"])
    manifest_path = s.folder / "manifest.json"
    if not manifest_path.is_file():
        raise SpecError("--suite", f"{s.name}: no measured runs in {s.folder} yet",
                        "run benchmarks/vllm_cpu_bench.py (its README gives the command) to measure them")
    import json

    runs = json.loads(manifest_path.read_text())["runs"]
    rated = [r for r in runs if r["kind"] == on["kind"]]
    pick = min(rated, key=lambda r: abs(float(r["value"]) - float(on["fraction"])))
    return [pick["file"]], [r["file"] for r in runs if r["file"] != pick["file"]]


def _step_rows(path: Path) -> tuple[list[dict[str, str]], StepShape, np.ndarray]:
    """Single-step rows (workload single-batch) of a serving CSV: their shapes and measured seconds."""
    rows = read_csv(path, path.name, ("model", "gpu", "tp", "batch", "input_tokens", "metric", "value", "unit"))
    b = np.array([float(r["batch"]) for r in rows])
    p = np.array([float(r["input_tokens"]) for r in rows])
    pre = np.array([r["metric"] == "prefill_batch_time" for r in rows])
    shape = StepShape(prefill_tokens=np.where(pre, b * p, 0.0), prefill_seqs=np.where(pre, b, 0.0),
                      prefill_pairs=np.where(pre, b * p * (p + 1) / 2, 0.0), prefill_kv_tokens=np.where(pre, b * p, 0.0),
                      decode_seqs=np.where(pre, 0.0, b), decode_kv_tokens=np.where(pre, 0.0, b * (p + 1)))
    scale = np.array([{"ms": 1e-3, "s": 1.0}[r["unit"].strip()] for r in rows])
    return rows, shape, np.array([float(r["value"]) for r in rows]) * scale


def _take(shape: StepShape, idx: np.ndarray) -> StepShape:
    return StepShape(**{k: np.asarray(getattr(shape, k))[idx] for k in ("prefill_tokens", "prefill_seqs",
                                                                        "prefill_pairs", "prefill_kv_tokens",
                                                                        "decode_seqs", "decode_kv_tokens")})


def _dispatch_bound(dep: Deployment, shape: StepShape, engine: EngineProfile) -> float:
    """The largest host dispatch time per launched kernel that leaves every fit row's step unchanged (never below
    the profile's own). Eager PyTorch launches kernels asynchronously, so dispatch overlaps the GPU's work and a row
    shows it only where it exceeds that work (``IterationTime.total_s``): any value up to the fit rows' least GPU
    time per kernel fits them equally, and an engine whose dispatch is unknown is bounded by it, not told by it."""
    it = iteration_time(dep.model, dep.plan, dep.perf, shape, engine, dep.accelerator)
    kernels = kernels_per_step(dep.model, dep.plan, shape.prefill_tokens, shape.decode_seqs)
    eager = graph_batches(engine, shape.prefill_tokens, shape.decode_seqs) == 0  # a replayed graph dispatches none
    per = (np.asarray(it.gpu_s, float) / np.asarray(kernels, float))[np.broadcast_to(eager, np.shape(it.gpu_s))]
    return max(float(np.min(per)) if per.size else 0.0, engine.kernel_dispatch_s)


def _parts(it: IterationTime) -> str:
    """One step's prediction taken apart (ms): what the device runs, the host dispatch it overlaps, the engine's
    exposed host terms."""
    v = {k: float(np.asarray(x, float).ravel()[0]) * 1e3 for k, x in it.to_dict().items() if k.endswith("_s")}
    return (f"gpu {v['gpu_s']:.1f} ms (GEMMs+norms {v['layers_s']:.1f}, attention {v['attention_s']:.1f}, head "
            f"{v['head_s']:.1f}, TP all-reduces {v['tp_comm_s']:.1f}), host dispatch {v['cpu_dispatch_s']:.1f} "
            f"({'exposed' if v['cpu_dispatch_s'] > v['gpu_s'] else 'overlapped'}), engine host terms "
            f"{v['overhead_s']:.1f}")


def _steps_suite(s: Suite, calibration: str | None) -> Report:
    """Fit per GPU on the fit file's rows; check the check files' rows of the same GPU. A checked row's band spans
    the host dispatch per kernel from the profile's to the most the fit rows allow (:func:`_dispatch_bound`)."""
    if s.spec.get("flag_variants"):
        raise SpecError("flag_variants", f"{s.name}: a step-time suite replays no runs to vary",
                        "state the variants' rows in the check files instead")
    out: list[Row] = []
    notes: list[str] = []
    fit_rows, fit_shape, fit_y = _step_rows(s.folder / s.spec["calibrate_on"][0])
    checks = [_step_rows(s.folder / n) for n in s.spec["check"]]
    for gpu in dict.fromkeys(r["gpu"] for r in fit_rows):
        spec = {**s.spec, "accelerator": gpu, "calibration": s.spec["calibration"][gpu]}
        idx = np.array([r["gpu"] == gpu for r in fit_rows])
        tp = int(next(r["tp"] for r in fit_rows if r["gpu"] == gpu))
        dep, _ = deployment({**spec, "tp": tp}, s.folder, calibration)
        obs = steps_observations(f"{gpu} tp{tp}", fit_y[idx], _take(fit_shape, np.flatnonzero(idx)), dep)
        fit = fit_engine_terms([obs], prior_terms(dep.engine))
        profile = fitted_profile(dep.engine, fit, f"{dep.engine.name}-{gpu}-fitted", {"calibration": dep.perf.name})
        bound = _dispatch_bound(dep, _take(fit_shape, np.flatnonzero(idx)), profile)
        upper = profile.with_(kernel_dispatch_s=bound)
        notes.append(f"{gpu}: fitted on its {int(idx.sum())} TP{tp} rows: " + ", ".join(
            f"{k} {v * 1e3:.4g} ms" for k, v in fit.terms.items() if k in fit.fitted)
            + f" (condition {fit.condition:.3g}, rms relative residual {fit.residuals[obs.name]['all']:.3f}"
            + (f"; {fit.describe_confounded()}" if fit.confounded else "") + "); host "
            f"dispatch per kernel: the profile's {profile.kernel_dispatch_s * 1e6:.3g} us, up to {bound * 1e6:.3g} us "
            f"leaves every TP{tp} row unchanged (the band of the checked rows)")
        for rows, shape, y in checks:
            for i, r in enumerate(rows):
                if r["gpu"] != gpu:
                    continue
                d, _ = deployment({**spec, "tp": int(r["tp"])}, s.folder, calibration)
                one = _take(shape, np.array([i]))
                case = f"{r['model']} {gpu} tp{r['tp']} b{r['batch']} {r['input_tokens']}"
                for label, eng in (("uncalibrated", d.engine), ("fitted on TP2", profile)):
                    it = iteration_time(d.model, d.plan, d.perf, one, eng, d.accelerator)
                    t = float(np.asarray(it.total_s).ravel()[0]) * 1e3
                    band: tuple[float | None, float | None] = (None, None)
                    if eng is profile:
                        hi = float(np.asarray(iteration_time(d.model, d.plan, d.perf, one, upper, d.accelerator)
                                              .total_s).ravel()[0]) * 1e3
                        band = (min(t, hi), max(t, hi))
                    out.append(Row(f"{s.name} {label}", case, r["metric"], y[i] * 1e3, t, "ms", _parts(it), *band))
        notes += _floor_notes(s, gpu, spec, checks, out, calibration)
    said = (f"sampling {DEFAULT_SAMPLING.name}: the step-time rows state no sampling parameters, so vLLM's "
            "SamplingParams default (temperature 1.0) is assumed")
    return Report(f"bench:{s.name}", "per GPU: " + ", ".join(s.spec["calibration"].values()), tuple(out),
                  tuple([*notes, said, s.spec.get("note", "")]))


def _floor_notes(s: Suite, gpu: str, spec: dict[str, Any], checks: list, out: list[Row],
                 calibration: str | None) -> list[str]:
    """Per checked TP of ``gpu``: the least worst-row error any non-negative host terms reach on those rows
    themselves (:func:`minimax_floor`; a floor, not a prediction), beside the worst row after the TP2 fit. A floor
    above the target says no fit of these terms, at any TP and on any rows, meets it there."""
    notes = []
    for tp in sorted({int(r["tp"]) for rows, _, _ in checks for r in rows if r["gpu"] == gpu}):
        d, _ = deployment({**spec, "tp": tp}, s.folder, calibration)
        pick = [(shape, y, np.flatnonzero([r["gpu"] == gpu and int(r["tp"]) == tp for r in rows]))
                for rows, shape, y in checks]
        obs = [steps_observations(f"{gpu} tp{tp}", y[i], _take(shape, i), d) for shape, y, i in pick if i.size]
        floor, terms = minimax_floor(obs)
        worst = max(abs(r.error_pct) for r in out if r.source.endswith("fitted on TP2") and f"{gpu} tp{tp} " in r.case)
        notes.append(f"{gpu} TP{tp}: fitted on its own {sum(o.rows for o in obs)} rows (a floor, not a prediction), no "
                     f"non-negative host terms bring every row within {100 * floor:.1f}% (worst row at best; terms "
                     + ", ".join(f"{k} {v * 1e3:.4g} ms" for k, v in terms.items() if k != "ttft_offset_s")
                     + f"); after the TP2 fit the worst row is {worst:.1f}%")
    return notes


def run_bench_suite(name: str, calibration: str | None = None) -> Report:
    """One shipped suite: uncalibrated rows, then rows of the checked runs after the fit."""
    s = load_suite(name)
    return _steps_suite(s, calibration) if s.spec.get("kind") == "steps" else _bench_suite(s, calibration)


__all__ = ["SUITES", "FlagVariant", "deployment", "flag_variants", "load_suite", "run_bench_suite", "saturation_rows",
           "with_bands"]
