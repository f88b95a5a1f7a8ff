"""``capsim validate bench`` (measured runs replayed on the user's deployment, measured against predicted) and
``capsim calibrate engine`` (the engine's host terms fitted to runs, the device calibration held fixed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from capsim.cli import deploy as d
from capsim.cli import options as o
from capsim.cli.common import JsonOpt, console, emit_json, table
from capsim.errors import SpecError

Files = Annotated[list[Path] | None, typer.Argument(help="Benchmark results to replay: vllm bench serve --save-result "
                                                    "--save-detailed JSON, sglang.bench_serving --output-details "
                                                    "JSONL, GenAI-Perf profile_export.json, AIPerf "
                                                    "profile_export.jsonl, or per-request CSVs (told by content).",
                                                    show_default=False)]
SuiteOpt = Annotated[str | None, typer.Option("--suite", help="A shipped suite instead of files: distserve, "
                                              "splitwise, vllm-cpu.")]
CalibrateOn = Annotated[list[Path] | None, typer.Option("--calibrate-on", help="Fit the engine's host terms on "
                                                        "these runs first, then score only the others.")]
Check = Annotated[list[Path] | None, typer.Option("--check", help="Runs to score (the same as giving them as "
                                                  "arguments).")]
From = Annotated[list[Path], typer.Option("--from", help="Measured runs to fit on (any file validate bench reads; "
                                          "every run a file holds); repeat for several.")]
Out = Annotated[Path, typer.Option("--out", help="Where to write the fitted engine profile (YAML).")]
Name = Annotated[str | None, typer.Option("--name", help="The fitted profile's name (default: the --out file's "
                                          "stem).")]
InputLen = Annotated[int | None, typer.Option("--input-len", min=1, help="Prompt tokens of every request, for a "
                                              "GenAI-Perf export that records no count (no usage, text prompts).")]
OutputLen = Annotated[int | None, typer.Option("--output-len", min=1, help="Output tokens of every request, for a "
                                               "GenAI-Perf export whose payloads and responses fix none.")]
Rows = Annotated[int, typer.Option("--rows", help="Most table rows to print (0 = all; --json has all).", min=0)]


def _runs(paths: list[Path], input_len: int | None = None, output_len: int | None = None) -> list:
    """Every run of every file, in order (a SGLang JSONL or a GenAI-Perf export may hold several)."""
    from capsim.data.bench import read_bench_runs
    from capsim.data.bench_lengths import GivenLengths

    given = GivenLengths(input_len, output_len)
    return [run for p in paths for run in read_bench_runs(p, given)]


def _deployment_given(values: dict[str, object]) -> list[str]:
    return [k for k, v in values.items() if v not in (None, "", (), [])]


def validate_bench(files: Files = None, suite: SuiteOpt = None, calibrate_on: CalibrateOn = None,
                   check: Check = None, model: o.Model = "", hf_config: o.HfConfig = None,
                   accelerator: d.AccelOpt = None, calibration: d.CalibOpt = None, threads: d.ThreadsOpt = None,
                   engine: d.EngineOpt = None, engine_file: d.EngineFileOpt = None, flags: d.FlagsOpt = "",
                   dtype: d.DtypeOpt = "bf16", tp: o.Tp = 1, kv_cache_space: d.KvSpaceOpt = None,
                   input_len: InputLen = None, output_len: OutputLen = None, rows: Rows = 60,
                   as_json: JsonOpt = False) -> None:
    """Replay measured runs (the same requests, lengths and arrivals) on the engine and device you name: measured
    against predicted mean, median and p99 TTFT, TPOT, ITL and E2E, and throughput. With --calibrate-on, the
    engine's host terms are fitted on those runs first and only the other runs are scored."""
    from capsim.cli.validate import print_report
    from capsim.data.bench import run_key
    from capsim.validation.bench import bench_report
    from capsim.validation.bench_suites import run_bench_suite

    d.positive(kv_cache_space, "--kv-cache-space")
    scored = [*(files or []), *(check or [])]
    if suite is not None:
        given = _deployment_given({"FILE": scored, "--calibrate-on": calibrate_on, "--model": model,
                                   "--hf-config": hf_config, "--accelerator": accelerator, "--threads": threads,
                                   "--engine": engine, "--engine-file": engine_file, "--flags": flags,
                                   "--tp": tp if tp != 1 else None, "--kv-cache-space": kv_cache_space,
                                   "--input-len": input_len, "--output-len": output_len})
        if given:
            raise SpecError("--suite", f"a shipped suite states its own runs and deployment; {', '.join(given)} "
                            "cannot be combined with it", "drop them, or give your own files without --suite")
        return print_report(run_bench_suite(suite, calibration), rows, as_json)
    if not scored:
        raise SpecError("FILE", "no runs to score", "give files to replay (or --check FILE), or --suite NAME")
    dep, notes = d.deployment(model, hf_config, accelerator, calibration, threads, engine, engine_file, flags,
                              dtype, tp, kv_cache_space)
    notes = list(notes)
    if calibrate_on:
        from capsim.calibration.engine_cal import calibrate_engine

        fit_runs = _runs(calibrate_on)
        overlap = {run_key(r) for r in fit_runs} & {run_key(r) for r in _runs(scored, input_len, output_len)}
        if overlap:
            raise SpecError("--check", "a run to score is also a run to fit on", "score only runs the fit did not see")
        profile, fit = calibrate_engine(fit_runs, dep, f"{dep.engine.name}-fitted")
        notes.append(f"engine host terms fitted on {', '.join(r.name for r in fit_runs)} (scored: only the other "
                     "runs): " + fit.describe_terms()
                     + (f"; {fit.describe_confounded()}" if fit.confounded else "")
                     + f"; condition {fit.condition:.3g}; rms relative residual "
                     + ", ".join(f"{k} {v['all']:.3f}" for k, v in fit.residuals.items()))
        dep = dep.with_engine(profile)
    report = bench_report(_runs(scored, input_len, output_len), dep, notes=tuple(notes))
    return print_report(report, rows, as_json)


def calibrate_engine_command(runs: From, out: Out, engine: d.EngineOpt = None, engine_file: d.EngineFileOpt = None,
                             name: Name = None, model: o.Model = "", hf_config: o.HfConfig = None,
                             accelerator: d.AccelOpt = None, calibration: d.CalibOpt = None,
                             threads: d.ThreadsOpt = None, flags: d.FlagsOpt = "", dtype: d.DtypeOpt = "bf16",
                             tp: o.Tp = 1, kv_cache_space: d.KvSpaceOpt = None, as_json: JsonOpt = False) -> None:
    """Fit the engine's CPU-side terms (per step, per running sequence, per prompt token, the constant the server
    and client add to TTFT) to one or a few measured runs, holding the device calibration fixed, and write an engine
    profile with its provenance (files, sha256, fit residuals). Refuses when the runs cannot separate the terms,
    naming the run that would."""
    from capsim.calibration.engine_cal import calibrate_engine
    from capsim.calibration.engine_file import write_engine_file

    start = time.monotonic()
    dep, _notes = d.deployment(model, hf_config, accelerator, calibration, threads, engine, engine_file, flags,
                               dtype, tp, kv_cache_space)
    measured = _runs(runs)
    profile, fit = calibrate_engine(measured, dep, name or out.stem, {"flags": flags, "model": dep.model.name})
    path = write_engine_file(profile, out)
    elapsed = time.monotonic() - start
    if as_json:
        return emit_json({"path": str(path), "engine": profile.name, "elapsed_s": elapsed, "fit": fit.to_dict(),
                          "deployment": dep.describe()})
    body = [[k, f"{v * 1e3:.4g} ms", f"{fit.stderr[k] * 1e3:.2g} ms" if k in fit.stderr else "",
             f"{fit.confounded[k] * 1e3:.2g} ms" if k in fit.confounded else "",
             "fitted" if k in fit.fitted else "not in the data (0)"] for k, v in fit.terms.items()]
    console.print(table(f"engine {profile.name} (base {dep.engine.name}) -> {path}",
                        ["term", "value", "standard error", "with the device's price free", ""], body))
    console.print(table("fit residuals (rms of relative error)", ["run", "rows"],
                        [[r, ", ".join(f"{k} {v:.3f}" for k, v in kinds.items())]
                         for r, kinds in fit.residuals.items()]))
    console.print(f"condition number {fit.condition:.3g}; rows {fit.rows}; deployment: {dep.describe()}; "
                  f"done in {elapsed:.1f} s; use it with --engine-file {path}")
    return None


__all__ = ["calibrate_engine_command", "validate_bench"]
