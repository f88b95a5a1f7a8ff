"""``capsim serve``: simulate a serving fleet under a workload and print ``vllm bench serve``-style metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from capsim.analytic.serving import Sampling
from capsim.cli import options as o
from capsim.cli.calibrate import warn_if_other_machine
from capsim.cli.common import JsonOpt, console, emit_json, pairs, table
from capsim.cli.deploy import (
    AccelOpt,
    EngineFileOpt,
    KvSpaceOpt,
    ThreadsOpt,
    positive,
    resolve_device,
    resolve_engine,
)
from capsim.errors import SpecError
from capsim.sim.serving import DEFAULT_MAX_EVENTS, ServeConfig, check_work, engine_plan, simulate
from capsim.sim.serving.presets import PRESETS, WorkloadSpec, build_workload, get_preset, preset_spec
from capsim.sim.serving.router import RouterKind
from capsim.sim.serving.workload import ArrivalKind, LengthKind, Lengths
from capsim.specs.engine import SchedulerKind, get_engine

Engine = Annotated[str | None, typer.Option("--engine", "-e", help="Engine profile: vllm (V1 0.9+, the default), vllm-v1-0.8, vllm-v1-0.8.4, vllm-v1-0.8.5, vllm-v0.6.5 (0.6.5-0.7), vllm-v0.6 (0.6.0-0.6.4), vllm-v0 (0.5), vllm-0.2, vllm-cpu (vLLM's CPU backend), sglang, tensorrt-llm (1.0+), tensorrt-llm-0.14, tensorrt-llm-0.11, tensorrt-llm-0.10, tensorrt-llm-0.8, tensorrt-llm-0.6, tensorrt-llm-0.5, nim-1.8 (capsim catalog engines).")]
Ep = Annotated[int, typer.Option("--ep", help="MoE: split the routed experts over this many GPUs of the TP group, "
                                               "each expert whole (expert parallel).", min=1)]
DpAttn = Annotated[bool, typer.Option("--dp-attention", help="MoE: attention data-parallel over the TP group "
                                                             "(SGLang/TensorRT-LLM attention DP).")]
Graphs = Annotated[bool | None, typer.Option("--cuda-graphs/--no-cuda-graphs", help="Override the engine's CUDA graphs.")]
Sched = Annotated[SchedulerKind | None, typer.Option("--scheduler", help="Batching policy (default: the engine's).")]
MaxSeqs = Annotated[int | None, typer.Option("--max-seqs", help="max_num_seqs (default: the engine's; TensorRT-LLM's "
                                             "max_batch_size, per rank under --dp-attention).", min=1)]
MaxTok = Annotated[int | None, typer.Option("--max-batched-tokens", "--chunk-size",
                                            help="Token budget per step; Sarathi's chunk size (default: the engine's).",
                                            min=1)]
Replicas = Annotated[int, typer.Option("--replicas", "-r", help="Replicas of the engine layout.", min=1)]
Prefill = Annotated[int, typer.Option("--prefill-replicas", help="Disaggregate: this many replicas prefill, the "
                                                                 "rest decode (0: every replica does both).", min=0)]
Router = Annotated[RouterKind, typer.Option("--router", help="How requests pick a replica.")]
Quant = Annotated[str, typer.Option("--quantization", "-q", help="none, int8, int4, fp8, w8a8-int8 or nvfp4 (Blackwell).")]
Dtype = Annotated[str, typer.Option("--dtype", help="Serving dtype of unquantized weights and activations.")]
KvDtype = Annotated[str | None, typer.Option("--kv-cache-dtype", help="KV-cache format (default: --dtype).")]
MemFrac = Annotated[float | None, typer.Option("--gpu-memory-utilization", help="Memory fraction for the engine "
                                                                                "(default: the engine's).")]
Workload_ = Annotated[str | None, typer.Option("--workload", "-w", help=f"Preset: {', '.join(PRESETS)}.")]
Trace = Annotated[str | None, typer.Option("--trace", help="Trace CSV (arrived_at, num_prefill_tokens, "
                                                           "num_decode_tokens) or a shipped trace name.")]
Arrival = Annotated[ArrivalKind | None, typer.Option("--arrival", help="Arrival process (default: poisson, or the "
                                                                        "trace's own arrivals).")]
Rate = Annotated[float | None, typer.Option("--rate", help="Requests per second (poisson, gamma; > 0).", min=0)]
Cv = Annotated[float, typer.Option("--cv", help="Coefficient of variation of gamma inter-arrival gaps (> 0).",
                                   min=0)]
Diurnal = Annotated[str | None, typer.Option("--diurnal", help="Comma-separated rates (req/s) over one period.")]
Period = Annotated[float, typer.Option("--period", help="Diurnal period in seconds.", min=1)]
Clients = Annotated[int, typer.Option("--clients", help="Closed loop: concurrent clients.", min=0)]
LenKind = Annotated[LengthKind, typer.Option("--lengths", help="Length distribution of --prompt/--output.")]
PromptT = Annotated[int | None, typer.Option("--prompt-tokens", help="Prompt length (fixed; mean; uniform low).", min=1)]
OutputT = Annotated[int | None, typer.Option("--output-tokens", help="Output length (fixed; mean; uniform low).", min=1)]
Spread = Annotated[float, typer.Option("--length-cv", help="Log-normal coefficient of variation.", min=0)]
Hi = Annotated[float, typer.Option("--uniform-high", help="Uniform: high end as a multiple of the low end.", min=1)]
Requests = Annotated[int | None, typer.Option("--requests", "-n", help="Requests to simulate.", min=1)]
Duration = Annotated[float | None, typer.Option("--duration", help="Seconds of arrivals to simulate (> 0).", min=0)]
TimeScale = Annotated[float, typer.Option("--time-scale", help="Trace replay (--trace, or a trace preset such as "
                                                               "azure-conv): multiply arrival times by this (> 0).",
                                          min=0)]
SloTtft = Annotated[float | None, typer.Option("--slo-ttft", help="TTFT target, seconds (default: the preset's).",
                                               min=0)]
SloTpot = Annotated[float | None, typer.Option("--slo-tpot", help="TPOT target, seconds (default: the preset's).",
                                               min=0)]
Calib = Annotated[str | None, typer.Option("--calibration", "-c", help="Calibration name or file, or a rule: "
                                                                       "profile (the default: the accelerator's GPU-profile "
                                                                       "one, else its datasheet) or datasheet; a measured "
                                                                       "one is a device of its own: leave -a out.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of arrivals, lengths and the random router.", min=0)]
StepMode = Annotated[bool, typer.Option("--step-mode", help="Reference mode: one event per decode step (slow).")]
Csv = Annotated[Path | None, typer.Option("--csv", help="Write the per-request records to this CSV file.")]

JSON_KEYS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p90_s",
             "tpot_p99_s", "itl_mean_s", "itl_p50_s", "itl_p90_s", "itl_p99_s", "e2e_mean_s", "e2e_p50_s",
             "e2e_p90_s", "e2e_p99_s")


def _lengths(kind: LengthKind, prompt: int | None, output: int | None, cv: float, hi: float) -> Lengths | None:
    if prompt is None and output is None:
        return None
    if prompt is None or output is None:
        raise SpecError("--prompt-tokens/--output-tokens", "only one of the two was given", "give both")
    if kind is LengthKind.FIXED:
        return Lengths.fixed(prompt, output)
    if kind is LengthKind.UNIFORM:
        return Lengths.uniform((prompt, int(prompt * hi)), (output, int(output * hi)))
    if kind is LengthKind.LOGNORMAL:
        return Lengths.lognormal(prompt, cv, output, cv)
    raise SpecError("--lengths", "empirical lengths come from a trace", "pass --trace PATH")


def _spec(preset: str | None, trace: str | None, arrival: ArrivalKind | None, lengths: Lengths | None,
          kw: dict[str, Any]) -> WorkloadSpec:
    if preset is not None:
        if trace is not None or lengths is not None:
            raise SpecError("--workload", "a preset brings its own lengths", "drop --trace/--prompt-tokens")
        base = preset_spec(preset, kw["rate_rps"], kw["requests"], kw["duration_s"], kw["seed"])
        if base.arrival is ArrivalKind.TRACE and arrival in (None, ArrivalKind.TRACE):
            return WorkloadSpec(**{**base.__dict__, "time_scale": kw["time_scale"]})
        if arrival is None:
            return base
        return WorkloadSpec(**{**base.__dict__, **{k: v for k, v in kw.items() if v is not None},
                               "arrival": arrival, "lengths": base.lengths})
    if trace is None and lengths is None:
        raise SpecError("workload", "no workload given", "pass --workload PRESET, --trace PATH, or --rate with "
                        "--prompt-tokens and --output-tokens")
    if arrival is None:
        arrival = ArrivalKind.TRACE if trace is not None and kw["rate_rps"] is None else ArrivalKind.POISSON
    return WorkloadSpec(arrival=arrival, lengths=lengths, trace=trace, name=Path(trace).stem if trace else "custom",
                        **{k: v for k, v in kw.items() if v is not None})


def _replays(workload: str | None, trace: str | None, arrival: ArrivalKind | None, rate: float | None) -> bool:
    """Whether the arrivals are a trace's own (a trace preset or --trace, without --rate or another --arrival)."""
    if arrival is not None:
        return arrival is ArrivalKind.TRACE
    if workload is not None:
        return get_preset(workload).rate_rps is None and rate is None
    return trace is not None and rate is None


def _check_applicable(workload: str | None, trace: str | None, arrival: ArrivalKind | None, rate: float | None,
                      duration: float | None, cv: float, time_scale: float, lengths: LengthKind, prompt: int | None,
                      output: int | None, replicas: int) -> None:
    """Options that do not apply to the chosen workload are errors, never silently ignored."""
    kind = arrival or (ArrivalKind.TRACE if _replays(workload, trace, arrival, rate) else ArrivalKind.POISSON)
    own = prompt is not None or output is not None
    for name, value in (("rate", rate), ("duration", duration), ("cv", cv), ("time-scale", time_scale)):
        if value is not None and value <= 0:
            raise SpecError(f"--{name}", f"must be > 0, got {value:g}", "give a positive value")
    o.inapplicable([
        ("rate", kind in (ArrivalKind.POISSON, ArrivalKind.GAMMA), "with poisson or gamma arrivals"),
        ("cv", kind is ArrivalKind.GAMMA, "with --arrival gamma"),
        ("diurnal", kind is ArrivalKind.DIURNAL, "with --arrival diurnal"),
        ("period", kind is ArrivalKind.DIURNAL, "with --arrival diurnal"),
        ("clients", kind is ArrivalKind.CLOSED, "with --arrival closed"),
        ("time_scale", kind is ArrivalKind.TRACE, "when replaying a trace's arrivals (--trace or a trace preset)"),
        ("lengths", own, "with --prompt-tokens and --output-tokens"),
        ("length_cv", own and lengths is LengthKind.LOGNORMAL, "with --lengths lognormal"),
        ("uniform_high", own and lengths is LengthKind.UNIFORM, "with --lengths uniform"),
        ("duration", kind not in (ArrivalKind.CLOSED, ArrivalKind.BATCH), "with open-loop arrivals"),
        ("router", replicas > 1, "with more than one replica"),
    ])


def _check_csv(csv: Path | None) -> None:
    """--csv is written after the simulation: check it can be before spending the time."""
    if csv is None:
        return
    if csv.is_dir():
        raise SpecError("--csv", f"{csv} is a folder", "give a file path, e.g. --csv requests.csv")
    if not csv.parent.is_dir():
        raise SpecError("--csv", f"the folder {csv.parent} does not exist", "create it or write elsewhere")


def _print(summary: dict[str, Any], title: str) -> None:
    rows = []
    for name in ("ttft", "tpot", "itl", "e2e"):
        rows.append([name.upper()] + [summary[f"{name}_{s}_s"] * 1e3 for s in ("mean", "p50", "p90", "p99")])
    console.print(table(title, ["latency (ms)", "mean", "p50", "p90", "p99"], rows))
    keys = ("completed", "duration_s", "request_throughput_rps", "input_tokens_per_s", "output_tokens_per_s",
            "goodput", "goodput_rps", "utilization_mean", "batch_size_mean", "kv_occupancy_mean", "kv_occupancy_max",
            "queue_length_mean", "preemptions", "kv_tokens_per_replica", "cost_per_hour_usd",
            "cost_per_million_output_tokens", "requests_over_context")
    console.print(pairs("throughput, load and cost", [[k, summary[k]] for k in keys]))


def serve(model: o.Model = "", accelerator: AccelOpt = None, tp: o.Tp = 1, pp: o.Pp = 1, ep: Ep = 1,
          dp_attention: DpAttn = False,
          replicas: Replicas = 1, engine: Engine = None, cuda_graphs: Graphs = None, sampling: o.SamplingOpt = "random",
          scheduler: Sched = None,
          max_seqs: MaxSeqs = None, max_batched_tokens: MaxTok = None, quantization: Quant = "none",
          dtype: Dtype = "bf16", kv_cache_dtype: KvDtype = None, gpu_memory_utilization: MemFrac = None,
          router: Router = RouterKind.ROUND_ROBIN, prefill_replicas: Prefill = 0, workload: Workload_ = None,
          trace: Trace = None, arrival: Arrival = None, rate: Rate = None, cv: Cv = 1.0, diurnal: Diurnal = None,
          period: Period = 86400.0, clients: Clients = 0, lengths: LenKind = LengthKind.FIXED,
          prompt_tokens: PromptT = None, output_tokens: OutputT = None, length_cv: Spread = 1.0,
          uniform_high: Hi = 2.0, requests: Requests = None, duration: Duration = None, time_scale: TimeScale = 1.0,
          slo_ttft: SloTtft = None, slo_tpot: SloTpot = None, calibration: Calib = None, price: o.Price = None,
          seed: Seed = 0, step_mode: StepMode = False, max_events: o.MaxEvents = DEFAULT_MAX_EVENTS,
          hf_config: o.HfConfig = None, csv: Csv = None, threads: ThreadsOpt = None,
          engine_file: EngineFileOpt = None, kv_cache_space: KvSpaceOpt = None, as_json: JsonOpt = False) -> None:
    """Simulate a serving fleet (SimPy): TTFT, TPOT, ITL, E2E, throughput, goodput, utilization and cost."""
    positive(kv_cache_space, "--kv-cache-space")
    sampled = Sampling.parse(sampling, "--sampling")
    spec_model = o.resolve_model(model, hf_config)
    eng = get_engine(resolve_engine(engine if engine or engine_file else "vllm", engine_file), cuda_graphs)
    warn_if_other_machine(calibration)
    acc, perf, kv, kind = resolve_device(accelerator, calibration, threads, price, eng)
    if eng.device_type != kind:
        raise SpecError("--engine", f"{eng.name} is {eng.engine} {eng.release}'s {eng.device_type.upper()} build, but "
                        f"the device is {'a CPU' if kind == 'cpu' else acc.name}",
                        "pass --engine vllm-cpu for vLLM's CPU backend on a CPU calibration")
    plan = engine_plan(eng, spec_model, acc, tp=tp, pp=pp, ep=ep, dp_attention=dp_attention, replicas=replicas,
                       max_batch=max_seqs,
                       max_batched_tokens=max_batched_tokens, quantization=quantization, dtype=dtype,
                       kv_cache_dtype=kv_cache_dtype, gpu_memory_utilization=gpu_memory_utilization,
                       kv_cache_bytes=kv_cache_space * 2**30 if kv_cache_space is not None else kv)
    rates = o.floats(diurnal, "--diurnal", low=0.0, low_open=False) if diurnal is not None else ()
    _check_applicable(workload, trace, arrival, rate, duration, cv, time_scale, lengths, prompt_tokens,
                      output_tokens, replicas)
    _check_csv(csv)
    kw = {"rate_rps": rate, "requests": requests, "duration_s": duration, "seed": seed, "cv": cv, "clients": clients,
          "diurnal_rates_rps": rates, "period_s": period, "time_scale": time_scale}
    spec = _spec(workload, trace, arrival, _lengths(lengths, prompt_tokens, output_tokens, length_cv, uniform_high), kw)
    work = spec.estimate(plan.replicas, plan.max_batched_tokens, not step_mode)  # before drawing the requests
    if work is not None:
        check_work(work, max_events, "lower --requests, --duration or --replicas")
    wl = build_workload(spec)
    preset = get_preset(workload) if workload else None
    cfg = ServeConfig(engine=eng, sampling=sampled, scheduler=scheduler, router=router, prefill_replicas=prefill_replicas,
                      slo_ttft_s=slo_ttft if slo_ttft is not None else (preset.slo_ttft_s if preset else None),
                      slo_tpot_s=slo_tpot if slo_tpot is not None else (preset.slo_tpot_s if preset else None),
                      price_usd_per_gpu_hour=price, fast=not step_mode, seed=seed, max_events=max_events)
    res = simulate(spec_model, plan, acc, perf, wl, cfg)
    if csv is not None:
        res.requests.to_csv(csv, index=False)
    s = res.summary
    if as_json:
        return emit_json({"model": spec_model.name, "accelerator": acc.name, "workload": wl.name,
                          "plan": plan.to_dict(), **s})
    title = (f"serve {spec_model.name} on {replicas} x {plan.gpus_per_replica} {acc.name} ({s['engine']}, "
             f"{s['scheduler']}; workload {wl.name}, {wl.size} requests; calibration {s['calibration']})")
    _print(s, title)
    if csv is not None:
        console.print(f"per-request records written to {csv}")
    return None


__all__ = ["serve"]
