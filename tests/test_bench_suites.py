"""The shipped engine-calibration suites (issue 14 targets): fit on some runs, score only the others.

- DistServe: after fitting on the 1 req/s run, every run at 1.5-3 req/s within 15% (mean TTFT and TPOT), and the
  saturation rate within 10%.
- Splitwise: after fitting on each GPU's TP2 rows, its TP4 and TP8 rows within 15%.
Known misses are strict xfails with their reason; where a fit of the host terms on the checked rows themselves
misses too (the suites' notes), the miss is the model's form or the data, not the carry of the fit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from capsim.errors import SpecError
from capsim.validation.bench_suites import run_bench_suite


@pytest.fixture(scope="module")
def splitwise_report():
    return run_bench_suite("splitwise")


@pytest.fixture(scope="module")
def splitwise(splitwise_report):
    return {(r.source.split(" ", 1)[1], r.case, r.metric): r for r in splitwise_report.rows}


LATE = ("measured 1.6-1.8 h after the other runs (SOURCE.md): at 2 req/s its TPOT is above the 2.5 req/s run's, a "
        "machine state the 1 req/s run does not show; fitted on itself the run's TPOT is within 2% with a step term "
        "of 12-13 ms against the 1 req/s run's 4.9 ms (the suite's notes); and its prompt batches carry up to 1,405 "
        "paddings, which vLLM 0.2.3 at the stated max_paddings=256 cannot form (scheduler.py L184-186; the suite's "
        "notes): not the flags stated, where the six other runs keep every batch within 256")
DISTSERVE_MISSES = {("vllm-100-2", "tpot_mean"): LATE, ("vllm-200-2", "tpot_mean"): LATE,
                    ("vllm-300-3", "ttft_mean"): "3 req/s is at the onset of queueing (measured mean TTFT 2.3x the "
                    "2.5 req/s run's): from 75 s on, admissions wait for finishes, the KV cache full at ~3,300-3,500 "
                    "blocks by the run's own timings, where the stated flags give 4,059 (test_the_queueing_runs_fit_"
                    "alone_with_an_earlier_launchers_kv_cache); the fitted engine queues less; the row's band over the launchers' "
                    "flags (suite.yaml flag_variants: 224-662 ms) holds the measured 462 ms (test_bench_flag_variants)",
                    ("vllm-150-1.5", "ttft_mean"): "+15.5% (+14.1% before vllm-0.2 priced how PagedAttention's blocks "
                    "share the SMs, engines.yaml decode_grid): the fit on the 1 req/s run's TTFT takes a larger host term "
                    "per prompt token, which the 1.5 req/s run's prompts pay too"}


def _cases(misses: dict, cases: list[tuple[str, str]]) -> list:
    return [pytest.param(c, m, marks=pytest.mark.xfail(strict=True, reason=misses[(c, m)])) if (c, m) in misses
            else (c, m) for c, m in cases]


@pytest.mark.parametrize("case, metric", _cases(DISTSERVE_MISSES, [
    (f, m) for f in ("vllm-150-1.5", "vllm-100-2", "vllm-200-2", "vllm-250-2.5", "vllm-300-3")
    for m in ("ttft_mean", "tpot_mean")]))
def test_distserve_after_fitting_on_1_req_s(distserve, case, metric):
    row = distserve[("fitted on vllm-100-1", case, metric)]
    assert abs(row.error_pct) <= 15, row


def test_distserve_saturation_after_fitting(distserve):
    fitted = distserve[("fitted on vllm-100-1", "distserve rate sweep", "saturation_rate")]
    uncal = distserve[("uncalibrated", "distserve rate sweep", "saturation_rate")]
    assert abs(fitted.error_pct) <= 10, fitted
    assert abs(fitted.error_pct) < abs(uncal.error_pct)


def test_the_fit_run_is_never_scored(distserve):
    assert not [k for k in distserve if k[0].startswith("fitted") and k[1] == "vllm-100-1"]


TP_COST = ("decode takes as long at TP8 as at TP4 in these data (a step bound by the host, not the GPU: vLLM's CUDA-graph "
           "PR #1926 of 2023-12 removes 'the CPU overheads in model execution', 'particularly effective ... when using "
           "tensor parallelism'); the host "
           "dispatch that would bind it is overlapped by the GPU at TP2, so the TP2 rows only bound it (the row's "
           "band: up to 48 us per kernel on the A100 host, 26 us on the H100 one) and the fit keeps the profile's "
           "10 us; DistServe's vLLM 0.2.3 profile on its A100 host implies 30 us, inside the band; NCCL's latency "
           "growth with ranks is not it: NCCL 2.18.6's own model (src/graph/tuning.cc, 2023-10) prices a ring "
           "all-reduce at 6.6 us + 2(n-1) x 0.6 us per NVLink hop on its LL protocol (14 us + 2(n-1) x 1.9 us on "
           "LL128), 7.2 us (22.8 us) more at TP8 than at TP2, 1.2 ms (3.7 ms) over a step's 161 all-reduces, against "
           "the 7-22 ms these rows lie above the TP2 fit")
BIG = ("batched and long prompts run further from the calibrated kernels at TP4 and TP8 than at TP2: on the A100 at "
       "TP4 16 prompts of 512 take 2893 ms against 2278 ms for one of 8192 (the same tokens, 1/16 of the attention; "
       "3239 vs 2990 at TP2); the device parts that change with TP do not give it (capsim's layer of GEMMs at N/TP or "
       "K/TP is 0.95-1.10x Vidur's measured Llama-2-70B layer at TP 2-8 on the A100, 0.96-1.28x on the H100; its 161 "
       "all-reduces are within 11% of Vidur's nccl timings at 8-67 MB, the table's largest), nor can a host term "
       "fitted at TP2, or at any TP: fitted on the checked rows themselves, no non-negative host terms bring every "
       "A100 TP4 row within 30.4% (A100 TP8 28.3%, H100 TP8 25.5%, H100 TP4 15.6%; the suite's notes)")
SPLITWISE_MISSES = {
    ("A100-SXM4-80GB tp4 b1 512", "decode_step_time"): TP_COST,
    ("A100-SXM4-80GB tp8 b1 512", "decode_step_time"): TP_COST,
    ("A100-SXM4-80GB tp8 b64 512", "decode_step_time"): TP_COST,
    ("H100-SXM5-80GB tp8 b1 512", "decode_step_time"): TP_COST,
    ("H100-SXM5-80GB tp8 b16 512", "decode_step_time"): TP_COST,
    ("A100-SXM4-80GB tp4 b16 512", "decode_step_time"): (
        "-18.0%, inside its host-dispatch band (39.8-58.5 ms, measured 48.5): " + TP_COST),
    ("H100-SXM5-80GB tp8 b1 2048", "prefill_batch_time"): (
        "+15.0% (+15.6% before cuDNN's H100 attention rates): the TP2 fit's per-prompt-token term (0.024 ms, the "
        "same at every TP) on the calibrated prefill; vLLM 0.2.3's Ray call per worker (engines.yaml vllm-0.2 "
        "worker_comm per_worker) adds 0.9 ms at TP8 over TP2; it was +14.9% with the worker calls independent of TP "
        "(at the flat 0.60 attention)"),
    ("A100-SXM4-80GB tp4 b1 8192", "prefill_batch_time"): BIG,
    ("A100-SXM4-80GB tp4 b16 512", "prefill_batch_time"): BIG,
    ("A100-SXM4-80GB tp4 b64 512", "prefill_batch_time"): BIG,
    ("A100-SXM4-80GB tp8 b64 512", "prefill_batch_time"): BIG,
    ("H100-SXM5-80GB tp4 b1 4096", "prefill_batch_time"): BIG,
    ("H100-SXM5-80GB tp4 b1 8192", "prefill_batch_time"): BIG,
    ("H100-SXM5-80GB tp4 b64 512", "prefill_batch_time"): BIG,
    # -14.7 -> -15.0%: H100 prefill attention at cuDNN's causal rate (published_attention_cudnn) for the flat 0.60
    ("H100-SXM5-80GB tp4 b16 512", "prefill_batch_time"): "-15.0%: " + BIG,
    ("H100-SXM5-80GB tp8 b1 8192", "prefill_batch_time"): BIG,
    ("H100-SXM5-80GB tp8 b16 512", "prefill_batch_time"): BIG,
    ("H100-SXM5-80GB tp8 b64 512", "prefill_batch_time"): BIG,
}
SPLITWISE_ROWS = [(f"{gpu} tp{tp} b{b} {p}", m) for gpu, tp, b, p, m in (
    *(("A100-SXM4-80GB", 4, b, p, "prefill_batch_time") for b, p in ((1, 512), (1, 2048), (1, 4096), (1, 8192),
                                                                       (16, 512), (64, 512))),
    *(("A100-SXM4-80GB", 4, b, 512, "decode_step_time") for b in (1, 16, 64)),
    *(("A100-SXM4-80GB", 8, b, 512, m) for b in (1, 64) for m in ("prefill_batch_time", "decode_step_time")),
    *(("H100-SXM5-80GB", 4, b, p, "prefill_batch_time") for b, p in ((1, 512), (1, 2048), (1, 4096), (1, 8192),
                                                                       (16, 512), (64, 512))),
    *(("H100-SXM5-80GB", 4, b, 512, "decode_step_time") for b in (1, 16, 64)),
    *(("H100-SXM5-80GB", 8, b, p, "prefill_batch_time") for b, p in ((1, 512), (1, 2048), (1, 8192), (16, 512),
                                                                       (64, 512))),
    *(("H100-SXM5-80GB", 8, b, 512, "decode_step_time") for b in (1, 16, 64)))]


@pytest.mark.parametrize("case, metric", _cases(SPLITWISE_MISSES, SPLITWISE_ROWS))
def test_splitwise_tp4_tp8_after_fitting_on_tp2(splitwise, case, metric):
    row = splitwise[("fitted on TP2", f"llama-2-70b {case}", metric)]
    assert abs(row.error_pct) <= 15, row


def test_splitwise_scores_every_tp4_and_tp8_row_and_no_tp2_row(splitwise):
    fitted = [k for k in splitwise if k[0] == "fitted on TP2"]
    assert len(fitted) == len(SPLITWISE_ROWS) and not [k for k in fitted if " tp2 " in k[1]]


FLOOR = re.compile(r"^(\S+) TP(\d+): fitted on its own (\d+) rows .* within ([\d.]+)% .* the worst row is ([\d.]+)%$")


def test_splitwise_floor_notes_say_no_fit_of_host_terms_meets_15_percent(splitwise_report):
    """Per GPU and checked TP, the least worst-row error any non-negative host terms reach on those rows themselves:
    above 15% on the A100 at TP4 and TP8 and the H100 at TP8, so those rows cannot all meet the target by any fit of
    these terms (at TP2 or any TP); and never above the worst row the TP2 fit gives there."""
    floors = {(m[1], int(m[2])): (int(m[3]), float(m[4]), float(m[5]))
              for n in splitwise_report.notes if (m := FLOOR.match(n))}
    gpus = ("A100-SXM4-80GB", "H100-SXM5-80GB")
    assert set(floors) == {(g, tp) for g in gpus for tp in (4, 8)}
    scored = {(g, tp): sum(1 for c, _ in SPLITWISE_ROWS if c.startswith(f"{g} tp{tp} ")) for g in gpus for tp in (4, 8)}
    assert {k: v[0] for k, v in floors.items()} == scored
    for _rows, floor, worst in floors.values():
        assert floor <= worst + 0.05  # both printed to 0.1%
    for key in (("A100-SXM4-80GB", 4), ("A100-SXM4-80GB", 8), ("H100-SXM5-80GB", 8)):
        assert floors[key][1] > 15, (key, floors[key])


def _distserve_self_fit(name):
    from capsim.calibration.engine_cal import calibrate_engine
    from capsim.data.bench import read_bench
    from capsim.validation import bench_suites as bs

    s = bs.load_suite("distserve")
    dep, _ = bs.deployment(s.spec, s.folder)
    fit_runs = [read_bench(s.folder / n) for n in bs._split(s)[0]]
    return calibrate_engine(fit_runs, dep)[1], bs._self_fit(read_bench(s.folder / name), dep)


@pytest.mark.parametrize("name", ["vllm-100-2.csv", "vllm-200-2.csv"])
def test_the_2_req_s_runs_fit_alone_with_another_step_term(name):
    """The TPOT the 1 req/s fit misses at 2 req/s is the runs' difference, not the model's form: each run fitted on
    itself is within 5%, with a step term over twice the 1 req/s run's."""
    base, (own, got) = _distserve_self_fit(name)
    assert abs(got["tpot_mean"]) < 5, got
    assert own.terms["step_s"] > 2 * base.terms["step_s"]


def test_the_3_req_s_mean_ttft_misses_even_fitted_on_itself():
    """At the onset of queueing the replay's mean TTFT is short of the measured one with the run's own host terms:
    not the carry of the fit, but the KV cache the stated flags give (the next test)."""
    _base, (_own, got) = _distserve_self_fit("vllm-300-3.csv")
    assert got["ttft_mean"] < -15 and abs(got["tpot_mean"]) < 5, got


def _self_fit_with(flags: dict[str, str], name: str) -> dict[str, float]:
    from capsim.data.bench import read_bench
    from capsim.validation import bench_suites as bs

    s = bs.load_suite("distserve")
    spec = dict(s.spec, flags=";".join(f"{k}={v}" for k, v in {
        **dict(kv.split("=") for kv in s.spec["flags"].split(";")), **flags}.items()))
    dep, _ = bs.deployment(spec, s.folder)
    return bs._self_fit(read_bench(s.folder / name), dep)[1]


@pytest.mark.parametrize("name", ["vllm-350-3.5.csv", "vllm-400-4.csv"])
def test_the_queueing_runs_fit_alone_with_an_earlier_launchers_kv_cache(name):
    """Past saturation the runs queue because vLLM 0.2.3 admits a waiting prompt only while its blocks fit above the
    watermark, and stops at the first that does not (vllm/core/scheduler.py L156-159, block_manager.py L103-120):
    their mean TTFT is set by the KV cache's size. Fitted on themselves they miss by a third or more with the 4,059
    blocks of the stated flags (DistServe 8f13114: gpu_memory_utilization 0.95, max_num_batched_tokens 16384), and
    are within 10% with the 3,499 blocks of the same launcher's flags of 2024-04-19/20 (99e10b2: 0.92 and 65536,
    whose profile run holds 4x the activations; --max-paddings unset, so 0.2.3's 256, as every batch of these runs
    keeps). Which launcher ran them no source says (SOURCE.md): a diagnosis, not a change of the suite."""
    stated = _self_fit_with({}, name)
    earlier = _self_fit_with({"gpu_memory_utilization": "0.92", "max_num_batched_tokens": "65536"}, name)
    assert stated["ttft_mean"] < -30 and abs(earlier["ttft_mean"]) < 10, (stated, earlier)
    assert abs(stated["tpot_mean"]) < 15 and abs(earlier["tpot_mean"]) < 10, (stated, earlier)


def test_prompt_batches_beyond_max_paddings_are_noted(distserve_report):
    """Requests whose first tokens reach the client within 2 ms shared a prompt step; padded to the longest, six runs
    keep every such batch within max_paddings=256 (at most 254 over 103 batches), the two 2 req/s runs do not (up to
    1,405): the suite's notes say so, and nothing else."""
    from capsim.data.bench import read_bench
    from capsim.validation import bench_suites as bs
    from capsim.validation.bench import prompt_batches

    s = bs.load_suite("distserve")
    worst = {}
    for name in ("vllm-100-1", "vllm-150-1.5", "vllm-100-2", "vllm-200-2", "vllm-250-2.5", "vllm-300-3",
                 "vllm-350-3.5", "vllm-400-4"):
        size, pad = prompt_batches(read_bench(s.folder / f"{name}.csv"))
        assert size.sum() == read_bench(s.folder / f"{name}.csv").size
        worst[name] = int(pad.max())
    assert worst == {"vllm-100-1": 120, "vllm-150-1.5": 244, "vllm-100-2": 1405, "vllm-200-2": 1405,
                     "vllm-250-2.5": 244, "vllm-300-3": 254, "vllm-350-3.5": 254, "vllm-400-4": 253}
    notes = [n for n in distserve_report.notes if "cannot schedule" in n]
    assert [n.split(":")[0] for n in notes] == ["vllm-100-2", "vllm-200-2"], notes


def test_distserve_notes_give_each_checked_run_fitted_on_itself(distserve_report):
    said = [n for n in distserve_report.notes if "fitted on itself (not a prediction)" in n]
    assert len(said) == 7 and not [n for n in said if n.startswith("vllm-100-1 ")]


def test_a_measured_suite_without_its_runs_says_how_to_measure_them(tmp_path, monkeypatch):
    import shutil

    from capsim.validation import bench_suites

    shipped = bench_suites.load_suite("vllm-cpu")
    shutil.copytree(shipped.folder / "model", tmp_path / "model")
    shutil.copy(shipped.folder / "suite.yaml", tmp_path / "suite.yaml")  # no manifest.json, no runs
    monkeypatch.setattr(bench_suites, "data_path", lambda *parts: tmp_path / parts[-1])
    with pytest.raises(SpecError, match="no measured runs.*vllm_cpu_bench"):
        run_bench_suite("vllm-cpu")


def test_splitwise_fitted_rows_carry_the_host_dispatch_band(splitwise):
    """A checked row's band spans the host dispatch per kernel from the profile's 10 us to the most the TP2 rows
    allow; the TP4/TP8 decode plateau (as slow at TP8 as at TP4) lies inside it for the batch-1 rows."""
    fitted = [r for k, r in splitwise.items() if k[0] == "fitted on TP2"]
    assert all(r.band_low <= r.predicted <= r.band_high for r in fitted)
    for case in ("A100-SXM4-80GB tp4 b1 512", "A100-SXM4-80GB tp8 b1 512", "H100-SXM5-80GB tp8 b1 512"):
        row = splitwise[("fitted on TP2", f"llama-2-70b {case}", "decode_step_time")]
        assert row.band_low < row.measured < row.band_high, row
        assert "host dispatch" in row.note and "TP all-reduces" in row.note
    big = splitwise[("fitted on TP2", "llama-2-70b A100-SXM4-80GB tp4 b16 512", "prefill_batch_time")]
    assert big.band_low == big.band_high  # a prefill's GPU time hides any dispatch the TP2 rows allow


def _a100_tp2_fit():
    """The splitwise suite's A100 deployment at TP2, its TP2 rows' shapes, the fitted profile and its dispatch bound."""
    from capsim.calibration.engine_cal import fitted_profile, steps_observations
    from capsim.calibration.engine_fit import fit_engine_terms
    from capsim.validation import bench_suites as bs

    s = bs.load_suite("splitwise")
    rows, shape, y = bs._step_rows(s.folder / "splitwise_tp2.csv")
    idx = np.flatnonzero([r["gpu"] == "A100-SXM4-80GB" for r in rows])
    dep, _ = bs.deployment({**s.spec, "accelerator": "A100-SXM4-80GB", "calibration": "A100-SXM4-80GB-profile",
                            "tp": 2}, s.folder)
    part = bs._take(shape, idx)
    profile = fitted_profile(dep.engine, fit_engine_terms([steps_observations("a", y[idx], part, dep)]), "f", {})
    return dep, part, profile, bs._dispatch_bound(dep, part, profile)


def test_the_dispatch_bound_leaves_every_fit_row_unchanged():
    """Any per-kernel dispatch up to the bound predicts the TP2 rows exactly as the fit does: the fit rows cannot
    tell the values in the band apart."""
    from capsim.analytic.serving import iteration_time

    dep, part, profile, bound = _a100_tp2_fit()
    assert bound > 3 * profile.kernel_dispatch_s
    at = {d: iteration_time(dep.model, dep.plan, dep.perf, part, profile.with_(kernel_dispatch_s=d),
                            dep.accelerator).total_s for d in (profile.kernel_dispatch_s, bound, 1.05 * bound)}
    np.testing.assert_allclose(at[bound], at[profile.kernel_dispatch_s], rtol=1e-12)
    assert np.max(at[1.05 * bound] - at[bound]) > 0  # beyond the bound a fit row would move


def test_a_step_that_replays_a_cuda_graph_does_not_bound_the_dispatch():
    """Only eager steps dispatch kernels from the host; a decode step replaying a CUDA graph tells nothing of it."""
    from capsim.analytic.serving import StepShape
    from capsim.specs.engine import get_engine
    from capsim.validation import bench_suites as bs

    s = bs.load_suite("splitwise")
    dep, _ = bs.deployment({**s.spec, "accelerator": "H100-SXM5-80GB", "calibration": "H100-SXM5-80GB-profile",
                            "tp": 2}, s.folder)
    eager, graphs = dep.engine, get_engine("vllm-0.2.6")
    decode = StepShape.decode(np.array([1.0, 8.0]), 512.0)
    assert bs._dispatch_bound(dep, decode, eager) > 2 * eager.kernel_dispatch_s
    assert bs._dispatch_bound(dep, decode, graphs) == graphs.kernel_dispatch_s


def test_distserve_profile_of_vllm_0_2_3_shows_the_same_host_bound_decode():
    """A check from another source (never a calibration): DistServe's single-forward profile of vLLM 0.2.3 on its
    A100 testbed (capsim/data/engine-profiles/distserve-vllm-0.2.3-a100-80g-2024-04.json, SOURCE.md) has OPT-13B's
    batch-1 decode step within 10% at TP1, TP2 and TP4 while the device's share falls by half: eager vLLM 0.2.3 is
    host-bound at TP4. The host time per kernel it implies (after capsim's exposed host terms) lies inside the band
    the splitwise TP2 rows leave on an A100 host, above the profile's 10 us."""
    import json
    from importlib import resources

    from capsim import get_accelerator, get_model, load_calibration
    from capsim.analytic.serving import StepShape, iteration_time, kernels_per_step
    from capsim.sim.serving import engine_plan
    from capsim.specs.engine import get_engine

    path = resources.files("capsim.data").joinpath("engine-profiles", "distserve-vllm-0.2.3-a100-80g-2024-04.json")
    fits = json.loads(path.read_text())["facebook/opt-13b"]
    step_ms = {tp: fits[str(tp)]["decoding_smallbs"][0] + fits[str(tp)]["decoding_smallbs"][1] * 128
               + fits[str(tp)]["decoding_smallbs"][2] for tp in (1, 2, 4)}  # a + b x context tokens + c x batch
    assert max(step_ms.values()) < 1.1 * min(step_ms.values())
    model, acc, eng = get_model("opt-13b"), get_accelerator("A100-SXM4-80GB"), get_engine("vllm-0.2")
    perf = load_calibration("A100-SXM4-80GB-profile").perf()
    plan = engine_plan(eng, model, acc, tp=4, dtype="fp16")
    one = StepShape.decode(np.array([1.0]), 128.0)
    it = iteration_time(model, plan, perf, one, eng, acc)
    gpu_ms, exposed_ms = float(np.asarray(it.gpu_s)[0]) * 1e3, float(np.asarray(it.overhead_s)[0]) * 1e3
    assert gpu_ms < 0.5 * step_ms[4]  # the GPU's share of the TP4 step: host-bound
    per_kernel_s = (step_ms[4] - exposed_ms) * 1e-3 / float(np.asarray(kernels_per_step(model, plan, 0.0, 1.0)))
    _dep, _part, profile, bound = _a100_tp2_fit()
    assert 2 * profile.kernel_dispatch_s < per_kernel_s < bound
