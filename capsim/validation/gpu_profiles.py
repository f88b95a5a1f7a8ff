"""Suite ``gpu-profiles``: real A100/H100 GEMM and NCCL timings against the profile and datasheet calibrations."""

from __future__ import annotations

import numpy as np

from capsim.calibration import load_calibration
from capsim.calibration.profiles import DEVICES, GEMM_OPS, comm_samples, op_samples
from capsim.perf import Perf
from capsim.validation.harness import Report, Row

TOKENS = {1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096}  # a spread of the profiled token counts


def _calibrations(device: str, which: str | None) -> list[Perf]:
    names = {"profile": f"{device}-profile", "datasheet": device}
    keep = [which] if which in names else list(names)
    return [load_calibration(names[k]).perf() for k in keep]


def _gemm_rows(device: str, perfs: list[Perf]) -> list[Row]:
    gpu_dir, _node, fit_models, held_out = DEVICES[device]
    rows = []
    for model in (*fit_models, *held_out):
        ops = op_samples(gpu_dir, model)
        ops = ops[ops["op"].isin(GEMM_OPS) & ops["tokens"].isin(TOKENS)].drop_duplicates(["op", "tokens", "tp"])
        tag = "held out" if model in held_out else "fitted on"
        for perf in perfs:
            pred = perf.gemm_s(ops["m"].to_numpy(), ops["n"].to_numpy(), ops["k"].to_numpy(), "fp16",
                               nbytes=ops["bytes"].to_numpy())
            for r, p in zip(ops.itertuples(), np.atleast_1d(pred), strict=True):
                rows.append(Row(perf.name, f"{model} tp{r.tp} m{r.tokens} {r.op}", "gemm_time_s", r.time_s,
                                float(p), "s", tag))
    return rows


def _comm_rows(device: str, perfs: list[Perf]) -> list[Row]:
    _gpu, node_dir, _fit, _held = DEVICES[device]
    comm = comm_samples(node_dir)
    comm = comm[(comm["tier"] == "intra") & (comm["collective"] == "all_reduce")]
    sizes = np.unique(comm["bytes"])
    keep = set(sizes[:: max(len(sizes) // 24, 1)])  # ~24 sizes per group, smallest to largest
    comm = comm[comm["bytes"].isin(keep)]
    rows = []
    for perf in perfs:
        pred = perf.collective_s("all_reduce", comm["bytes"].to_numpy(), comm["group"].to_numpy())
        for r, p in zip(comm.itertuples(), np.atleast_1d(pred), strict=True):
            rows.append(Row(perf.name, f"{node_dir} n{r.group} {r.bytes}B", "all_reduce_time_s", r.time_s, float(p),
                            "s", "fitted on"))
    return rows


def gpu_profiles_suite(path: object = None, calibration: str | None = None) -> Report:
    """Every profiled GEMM (a spread of token counts) and intra-node all-reduce, for each calibration.

    ``calibration`` = "profile" or "datasheet" keeps one kind; the default compares both.
    """
    if path is not None:
        from capsim.errors import SpecError
        raise SpecError("--file", "the gpu-profiles suite reads the shipped Vidur profiles", "drop --file")
    rows: list[Row] = []
    for device in DEVICES:
        perfs = _calibrations(device, calibration)
        rows += _gemm_rows(device, perfs) + _comm_rows(device, perfs)
    report = Report("gpu-profiles", ", ".join(sorted({r.source for r in rows})), tuple(rows))
    notes = []
    for source in sorted({r.source for r in rows}):
        for metric in ("gemm_time_s", "all_reduce_time_s"):
            for tag in ("fitted on", "held out"):
                sub = [r for r in rows if r.source == source and r.metric == metric and r.note == tag]
                if sub:
                    err = np.abs([r.error_pct for r in sub])
                    notes.append(f"{source} {metric} ({tag}, {len(sub)} rows): median |error| "
                                 f"{np.median(err):.1f}%, p90 {np.percentile(err, 90):.1f}%, max {err.max():.1f}%")
    return Report(report.suite, report.calibration, report.rows, tuple(notes))
