"""``capsim validate serving`` as a suite: every row of the file priced by :func:`capsim.validation.serving.predict`
(one code path), the band of what its source leaves open (the other published FP8 rate, an unstated KV-cache format, a
published bound on the engine's host time), and each source's simulated saturation rate where its rows are replays
at several rates.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from capsim.calibration.fp8 import fp8_rates, rates_note, with_fp8_scale
from capsim.data.loaders import load_trace
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.sim.serving import Workload
from capsim.sim.serving.fleet import attention_dp_ranks
from capsim.specs.catalog import get_accelerator
from capsim.specs.engine import HostCost
from capsim.validation.harness import (
    LINE,
    DataError,
    Report,
    Row,
    attempt,
    failed_row,
    measured_value,
    read_csv,
)
from capsim.validation.serving import (
    METRICS,
    PRECISIONS,
    REQUIRED,
    SATURATION_TTFT_S,
    SCALE,
    Software,
    _metric,
    _perf,
    _plan,
    _pp,
    _run,
    _trace,
    predict,
    row_software,
)


def _crossing(rates: list[float], ttft_s: list[float]) -> float:
    """The rate at which mean TTFT first reaches SATURATION_TTFT_S (log-linear between neighbours)."""
    for (r0, t0), (r1, t1) in zip(zip(rates, ttft_s, strict=True), zip(rates[1:], ttft_s[1:], strict=True),
                                  strict=False):
        if t0 < SATURATION_TTFT_S <= t1:
            return r0 + (r1 - r0) * math.log(SATURATION_TTFT_S / t0) / math.log(t1 / t0)
    return math.nan


def _simulated_saturation(base: dict[str, str], sw: Software, perf: Perf, csv_path: str | Path | None) -> float:
    """The rate at which the simulated mean TTFT of ``base``'s trace, rescaled to each rate, reaches the mark."""
    if sw.engine is None:
        raise SpecError(sw.unpriced_field, sw.unpriced)
    df = load_trace(_trace(base, csv_path))
    gaps = np.diff(df["arrived_at"].to_numpy(), prepend=df["arrived_at"].iloc[0])
    grid = [round(x, 2) for x in np.arange(1.0, 12.01, 0.25)]
    plan, sim = _plan(base, sw), []
    for rate in grid:
        n = min(int(round(100 * rate)), len(df))
        t = np.cumsum(gaps[:n])
        t = (t - t[0]) * (n / rate / max(t[-1] - t[0], 1e-9))
        wl = Workload("saturation", df["prompt_tokens"].to_numpy()[:n], df["output_tokens"].to_numpy()[:n], t)
        sim.append(_metric(_run(base, wl, plan, sw, perf), "ttft_mean"))
        if sim[-1] >= SATURATION_TTFT_S * 3:
            break
    predicted = _crossing(grid[: len(sim)], sim)
    if math.isnan(predicted):
        raise SpecError("saturation", f"the simulated mean TTFT stays under {SATURATION_TTFT_S:g} s up to "
                        f"{grid[-1]:g} req/s", "the rate grid ends there")
    return predicted


def saturation_row(rows: list[dict[str, str]], perf: Perf, csv_path: str | Path | None) -> Row | None:
    """Measured vs simulated saturation rate of a source's replays: the same requests (its longest trace), the
    first N = 100 x rate of them with their arrival gaps rescaled to span N / rate seconds, as the published runs
    were made (DistServe README: every run spans N / rate). The rate grid runs to 12 req/s. None where fewer than two
    runs exist or their mean TTFT never crosses the mark (nothing measured to compare with)."""
    ttft = sorted(((float(r["rate_rps"]), measured_value(r) * SCALE[r["unit"].strip()], r) for r in rows
                   if r["workload"] == "replay" and r["metric"] == "ttft_mean" and r["rate_rps"]),
                  key=lambda t: t[:2])  # two runs at one rate (repeats) tie: never compare the rows themselves
    if len(ttft) < 2:
        return None
    measured = _crossing([t[0] for t in ttft], [t[1] for t in ttft])
    if math.isnan(measured):  # the measured runs never reach the mark: no saturation was measured to compare with
        return None
    base = max(ttft, key=lambda t: len(load_trace(_trace(t[2], csv_path))))[2]
    case, unit = f"{base['model']} {base['gpu']}", "req/s"
    note = (f"rate where mean TTFT reaches {SATURATION_TTFT_S:g} s (log-linear between runs); measured between "
            f"{ttft[0][0]:g} and {ttft[-1][0]:g} req/s runs")
    value, err = attempt(_simulated_saturation, base, row_software(base), perf, csv_path)
    if err is not None:
        return failed_row(base["source"], case, "saturation_rate_rps", measured, unit, str(err))
    return Row(base["source"], case, "saturation_rate_rps", measured, value, unit, note)


def _fp8_band(r: dict[str, str], perf: Perf, sw: Software, path: str | Path | None, value: float,
              band: tuple[float, float] | None, note: str) -> tuple[tuple[float, float] | None, str]:
    """An FP8 row on a part whose FP8 GEMM rate is not measured (capsim.calibration.fp8.fp8_rates): the band reaches
    the prediction at the other published FP8/BF16 ratio, and the note names both (as training rows do)."""
    rates = fp8_rates(perf) if r["precision"].strip().lower() == "fp8" else None
    if rates is None:
        return band, note
    alt = predict(r, with_fp8_scale(perf, rates[1].dtype_scale), sw, path)
    values = (value, alt[0], *(band or ()), *(alt[2] or ()))
    unit = r["unit"].strip()
    return (min(values), max(values)), note + f"; {rates_note(rates, r['gpu'])} {alt[0] / SCALE[unit]:.5g} {unit}"


def _kv_band(r: dict[str, str], perf: Perf, sw: Software, path: str | Path | None, value: float,
             band: tuple[float, float] | None, note: str) -> tuple[tuple[float, float] | None, str]:
    """An fp4 row whose KV-cache format is not stated (no kv_cache_dtype flag): priced with the serving dtype's
    cache, and the band reaches the prediction with an FP8 cache (the format a checkpoint's kv_cache_quant_algo may
    name; TensorRT-LLM's KvCacheConfig.dtype "auto" takes the checkpoint's)."""
    if PRECISIONS[r["precision"].strip().lower()] != "nvfp4" or "kv_cache_dtype" in sw.plan or sw.engine is None:
        return band, note
    alt = predict(r, perf, replace(sw, plan={**sw.plan, "kv_cache_dtype": "fp8"}), path)
    values = (value, alt[0], *(band or ()), *(alt[2] or ()))
    unit = r["unit"].strip()
    return (min(values), max(values)), note + (f"; KV-cache format not stated: {r['precision'].strip()} weights with "
                                               f"a bf16 cache, {alt[0] / SCALE[unit]:.5g} {unit} with an fp8 cache")


# The host kind whose bound stands for a host the catalog does not name (an x86 DGX/HGX board, or unknown): Grace's
# PyTorch host path is the slower one measured (NVIDIA/TransformerEngine#2053: the host side of one torch nn.Linear
# forward takes 37.08 us on GB200, 13.48 us on a DGX H100's Xeon 8480C), so its bound is read as an upper bound
# elsewhere too; that the engine's whole host path keeps that op's ordering is an assumption, said in the row's note.
SLOWEST_HOST = "grace"


def _host_band(r: dict[str, str], perf: Perf, sw: Software, path: str | Path | None, value: float,
               band: tuple[float, float] | None, note: str) -> tuple[tuple[float, float] | None, str]:
    """A row whose engine release prices no host time but has a published bound on it (engines.yaml cpu_bound):
    the band reaches the prediction with the bound as a whole-step host phase, overlapped or exposed as the
    profile's overlap rules put a ``step`` phase, and the note names it. The point keeps the profile's host time."""
    eng, tp = sw.engine, int(r["tp"])
    if eng is None or not eng.cpu_bound or eng.host_cost(tp) != HostCost():
        return band, note
    host = get_accelerator(r["gpu"]).host_cpu
    kind = host if host in eng.cpu_bound else SLOWEST_HOST if SLOWEST_HOST in eng.cpu_bound else None
    if kind is None or not any(eng.cpu_bound[kind]):
        return band, note
    b0, b1 = eng.cpu_bound[kind]
    # The bound is one executor's, per its own sequences; under attention DP each rank's executor schedules only its
    # share of the replica's (fleet.attention_dp_ranks) and the ranks run side by side.
    ranks = attention_dp_ranks(eng, tp, bool(sw.plan.get("dp_attention", False)))
    alt_eng = eng.with_(cpu={"step": (b0, b1 / ranks, 0.0)})
    alt = predict(r, perf, replace(sw, engine=alt_eng), path)
    values = (value, alt[0], *(band or ()), *(alt[2] or ()))
    unit = r["unit"].strip()
    cite = eng.sources.get("cpu_bound", "engines.yaml cpu_bound").split(" (")[0].split(":")[0]  # the source's name
    how = "overlapped with the GPU" if any(alt_eng.host_cost(tp).overlapped) else "exposed"
    terms = f"<= {b1 * 1e6:.1f} us per sequence" + (f" + {b0 * 1e3:.3g} ms per step" if b0 else "") \
        + (f", each of {ranks} attention-DP ranks over its own sequences" if ranks > 1 else "")
    where = "" if kind == host else (f" (no figure for this host; an upper bound if its host path is no slower than "
                                     f"{SLOWEST_HOST.capitalize()}'s, as TransformerEngine#2053 times x86's)")
    note += (f"; host time not priced{where}: with {cite}'s {kind.capitalize()} host time ({terms}, {how}) "
             f"{alt[0] / SCALE[unit]:.5g} {unit}")
    if band is None and alt[2] is None and alt[0] == value:
        return None, note  # the bound never outlasts the GPU's step here: nothing is open
    return (min(values), max(values)), note


def _case(r: dict[str, str]) -> str:
    pp = (r.get("pp") or "").strip()
    case = f"{r['model']} {r['gpu']} x{r['gpus']}{f' pp{pp}' if pp not in ('', '1') else ''} {r['workload']}"
    return case + f" {r['trace'] or ''} b{r['batch'] or '-'} {r['input_tokens']}/{r['output_tokens'] or '-'}".rstrip()


def serving_suite(path: str | Path | None = None, calibration: str | None = None) -> Report:
    rows = read_csv(path, "serving_published.csv", REQUIRED)
    software = []
    for r in rows:  # the whole file is read before any row is priced: a malformed file prices nothing
        unit = r["unit"].strip()
        if unit not in SCALE:
            raise DataError("unit", f"line {r.get(LINE, '?')}: unknown unit {unit!r}", f"use one of {', '.join(SCALE)}")
        if r["metric"].strip() not in METRICS:
            raise DataError("metric", f"line {r.get(LINE, '?')}: unknown metric {r['metric']!r}",
                            f"use one of {', '.join(METRICS)}")
        if r["precision"].strip().lower() not in PRECISIONS:
            raise DataError("precision", f"line {r.get(LINE, '?')}: unknown precision {r['precision']!r}",
                            f"use one of {', '.join(PRECISIONS)}")
        measured_value(r)
        _pp(r)
        software.append(row_software(r))
    out, used = [], {}
    for r, sw in zip(rows, software, strict=True):
        unit, measured = r["unit"].strip(), measured_value(r)
        # a GPU outside the catalog leaves its row unpriced with the reason, as a training row's does
        perf, err = attempt(_perf, r["gpu"], calibration)
        if perf is not None:
            used[perf.name] = None
            got, err = attempt(predict, r, perf, sw, path)
        if err is not None or perf is None:
            out.append(failed_row(r["source"], _case(r), r["metric"], measured, unit, str(err)))
            continue
        predicted, note, band = got
        band, note = _fp8_band(r, perf, sw, path, predicted, band, note)
        band, note = _kv_band(r, perf, sw, path, predicted, band, note)
        band, note = _host_band(r, perf, sw, path, predicted, band, note)
        low, high = (None, None) if band is None else (band[0] / SCALE[unit], band[1] / SCALE[unit])
        out.append(Row(r["source"], _case(r), r["metric"], measured, predicted / SCALE[unit], unit, note, low, high))
    for source in dict.fromkeys(r["source"] for r in rows):
        group = [r for r in rows if r["source"] == source]
        perf, _ = attempt(_perf, group[0]["gpu"], calibration)
        sat = None if perf is None else saturation_row(group, perf, path)
        if sat is not None:
            out.append(sat)
    notes = ("engine per row: the profile of the release in engine + engine_version (engines.yaml), with the "
             "row's flags applied; a blank release is not priced",
             "calibration per row: the GPU-profile calibration where one ships for the row's GPU, else datasheet")
    return Report("serving", ", ".join(used), tuple(out), notes)


__all__ = ["saturation_row", "serving_suite"]
