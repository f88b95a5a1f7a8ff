"""Engine calibration: runs of a known engine taken apart into steps, and its host terms recovered by the fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from bench_runs import TRUE, device_s, engine_run, write_json

from capsim.analytic.serving import StepShape
from capsim.calibration.engine_fit import fit_engine_terms, minimax_floor
from capsim.calibration.engine_obs import DECODE, IDLE_TTFT, emissions, run_observations, step_observations
from capsim.data.bench import read_bench
from capsim.errors import SpecError


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(3)
    out = {}
    n = 60
    prompts = rng.integers(64, 512, n)
    outputs = rng.integers(4, 40, n)
    arrivals = np.cumsum(rng.exponential(0.15, n))
    out["poisson"] = write_json(tmp_path, "poisson", *engine_run(arrivals, prompts, outputs, TRUE), prompts, outputs)
    out["single"] = write_json(tmp_path, "single", *engine_run(np.zeros(n), prompts, outputs, TRUE, clients=1),
                               prompts, outputs, concurrency=1)
    return out


def test_emissions_follow_the_client_timeline(runs):
    run = read_bench(runs["poisson"])
    t, req, k = emissions(run)
    assert len(t) == int(run.output_tokens.sum())
    firsts = t[k == 0]
    np.testing.assert_allclose(firsts, run.sent_s + run.ttft_s)
    ends = np.array([t[req == i].max() for i in range(run.size)])
    np.testing.assert_allclose(ends, run.sent_s + run.e2e_s, rtol=1e-9)


def test_fit_recovers_the_engine_terms(runs):
    obs = [run_observations(read_bench(p), True, device_s) for p in runs.values()]
    fit = fit_engine_terms(obs)
    for name, value in TRUE.items():
        assert fit.terms[name] == pytest.approx(value, rel=0.05), name
    assert fit.residuals["poisson"]["all"] < 0.02
    assert set(fit.fitted) == set(TRUE)


def test_idle_rows_only_where_the_engine_was_idle(runs):
    single = run_observations(read_bench(runs["single"]), True, device_s)
    assert np.sum(single.kind == IDLE_TTFT) == 60  # one client: every request finds the engine idle
    assert np.all(single.features[single.kind == DECODE][:, 1] == single.features[single.kind == DECODE][:, 0])


def test_one_client_cannot_separate_step_and_sequence_terms(runs):
    obs = [run_observations(read_bench(runs["single"]), True, device_s)]
    with pytest.raises(SpecError) as err:
        fit_engine_terms(obs)
    assert "step_s" in str(err.value) and "sequence_s" in str(err.value) and "--max-concurrency" in str(err.value)


def test_single_steps_leave_the_ttft_offset_unfitted():
    b = np.array([1, 4, 16, 64, 1, 8])
    p = np.array([0, 0, 0, 0, 512, 2048])
    shape = StepShape(prefill_tokens=p, prefill_seqs=(p > 0) * 1.0, prefill_pairs=0.0, prefill_kv_tokens=p,
                      decode_seqs=np.where(p > 0, 0, b), decode_kv_tokens=np.where(p > 0, 0, b * 600))
    truth = device_s(shape) + 1e-3 + 2e-4 * np.asarray(shape.sequences) + 3e-5 * p
    fit = fit_engine_terms([step_observations("steps", truth, shape, device_s)])
    assert fit.not_in_data == ("ttft_offset_s",) and fit.terms["ttft_offset_s"] == 0.0  # no prior given
    assert fit.terms["step_s"] == pytest.approx(1e-3, rel=1e-6)
    assert fit.terms["prefill_token_s"] == pytest.approx(3e-5, rel=1e-6)


def test_a_term_no_row_holds_keeps_the_prior_and_says_so():
    shape = _steps([1, 4, 16, 64, 1, 8], [0, 0, 0, 0, 512, 2048])
    truth = device_s(shape) + 1e-3 + 2e-4 * np.asarray(shape.sequences) + 3e-5 * np.asarray(shape.prefill_tokens)
    fit = fit_engine_terms([step_observations("steps", truth, shape, device_s)], {"ttft_offset_s": 7e-3})
    assert fit.terms["ttft_offset_s"] == 7e-3 and fit.held == {"ttft_offset_s": 0}
    assert "ttft_offset_s 7 ms (held at the base profile's value: no row involves it, not fitted)" in fit.describe_terms()
    assert fit.terms["step_s"] == pytest.approx(1e-3, rel=1e-6)  # the fitted terms are the prior's to no extent


def test_one_idle_request_does_not_fit_the_ttft_offset(runs):
    """One row fixes a term exactly, its own error included (zero degrees of freedom): a run with one request that
    found the engine idle keeps the base profile's TTFT offset, and the other terms are fitted with that offset's
    time held in every row (MIN_ROWS)."""
    obs = run_observations(read_bench(runs["poisson"]), True, device_s)
    idle = np.flatnonzero(obs.kind == IDLE_TTFT)
    assert len(idle) >= 2
    keep = np.r_[np.flatnonzero(obs.kind != IDLE_TTFT), idle[:1]]
    one = dataclasses.replace(obs, measured_s=obs.measured_s[keep], base_s=obs.base_s[keep],
                              features=obs.features[keep], kind=obs.kind[keep],
                              prompt_s=None if obs.prompt_s is None else obs.prompt_s[keep])
    fit = fit_engine_terms([one], {"ttft_offset_s": TRUE["ttft_offset_s"]})
    for name in ("step_s", "sequence_s"):
        assert fit.terms[name] == pytest.approx(TRUE[name], rel=0.05), name
    one.measured_s[-1] += 0.02  # 20 ms of client jitter on the one idle request: not taken for the offset
    fit = fit_engine_terms([one], {"ttft_offset_s": TRUE["ttft_offset_s"]})
    assert fit.held == {"ttft_offset_s": 1} and "ttft_offset_s" not in fit.fitted
    assert fit.terms["ttft_offset_s"] == TRUE["ttft_offset_s"]
    both = np.r_[np.flatnonzero(obs.kind != IDLE_TTFT), idle[:2]]
    two = dataclasses.replace(one, measured_s=obs.measured_s[both], base_s=obs.base_s[both],
                              features=obs.features[both], kind=obs.kind[both],
                              prompt_s=None if obs.prompt_s is None else obs.prompt_s[both])
    assert "ttft_offset_s" in fit_engine_terms([two], {"ttft_offset_s": 1.0}).fitted  # two rows: fitted, prior unused


def test_the_fit_reports_each_terms_standard_error():
    """Exact single steps fix every term (standard errors ~0); the same steps with 5% noise give standard errors
    that cover the truth within a few of them, and the report names them."""
    b = np.array([1, 4, 16, 64, 1, 8, 2, 32])
    p = np.array([0, 0, 0, 0, 512, 2048, 256, 0])
    shape = StepShape(prefill_tokens=p, prefill_seqs=(p > 0) * 1.0, prefill_pairs=0.0, prefill_kv_tokens=p,
                      decode_seqs=np.where(p > 0, 0, b), decode_kv_tokens=np.where(p > 0, 0, b * 600))
    truth = device_s(shape) + 1e-3 + 2e-4 * np.asarray(shape.sequences) + 3e-5 * p
    exact = fit_engine_terms([step_observations("steps", truth, shape, device_s)])
    assert set(exact.stderr) == set(exact.fitted) and max(exact.stderr.values()) < 1e-12
    noisy = truth * (1 + 0.05 * np.random.default_rng(0).standard_normal(len(truth)))
    fit = fit_engine_terms([step_observations("steps", noisy, shape, device_s)])
    assert all(v > 0 for v in fit.stderr.values())
    assert abs(fit.terms["prefill_token_s"] - 3e-5) < 4 * fit.stderr["prefill_token_s"]
    assert f"(+-{fit.stderr['step_s'] * 1e3:.2g})" in fit.describe_terms()
    assert fit.to_dict()["stderr"] == fit.stderr


def _steps(b, p):
    b, p = np.asarray(b, float), np.asarray(p, float)
    return StepShape(prefill_tokens=p, prefill_seqs=(p > 0) * 1.0, prefill_pairs=0.0, prefill_kv_tokens=p,
                     decode_seqs=np.where(p > 0, 0, b), decode_kv_tokens=np.where(p > 0, 0, b * 600))


def test_the_minimax_floor_of_two_contradicting_steps():
    """The same step measured at 10 ms and 20 ms over a device time of 0: one step term t errs by (t - 10) / 10 on
    one and (20 - t) / 20 on the other; the least worst error is 1/3, at t = 40/3 ms."""
    shape = _steps([1, 1], [0, 0])
    obs = [step_observations("twice", np.array([0.01, 0.02]), shape, lambda s: 0.0 * np.asarray(s.sequences))]
    floor, terms = minimax_floor(obs)
    assert floor == pytest.approx(1 / 3, rel=1e-9)
    assert terms["step_s"] + terms["sequence_s"] == pytest.approx(0.04 / 3, rel=1e-9)
    assert terms["ttft_offset_s"] == 0.0  # no row involves it


def test_the_minimax_floor_is_zero_where_the_terms_made_the_rows():
    shape = _steps([1, 4, 16, 64, 1, 8, 2, 32], [0, 0, 0, 0, 512, 2048, 256, 0])
    truth = device_s(shape) + 1e-3 + 2e-4 * np.asarray(shape.sequences) + 3e-5 * np.asarray(shape.prefill_tokens)
    floor, terms = minimax_floor([step_observations("steps", truth, shape, device_s)])
    assert floor < 1e-9
    assert terms["prefill_token_s"] == pytest.approx(3e-5, rel=1e-6)


def test_no_fit_beats_the_minimax_floor():
    """The least-squares fit's worst row is never below the floor, and the floor is the worst row of its own terms:
    the note that says no fit of these terms meets a target cannot be undercut by the fit itself."""
    shape = _steps([1, 4, 16, 64, 1, 8, 2, 32], [0, 0, 0, 0, 512, 2048, 256, 0])
    truth = device_s(shape) + 1e-3 + 2e-4 * np.asarray(shape.sequences) + 3e-5 * np.asarray(shape.prefill_tokens)
    noisy = truth * (1 + 0.1 * np.random.default_rng(1).standard_normal(len(truth)))
    obs = [step_observations("steps", noisy, shape, device_s)]
    floor, terms = minimax_floor(obs)
    fit = fit_engine_terms(obs)

    def worst(t):
        pred = obs[0].base_s + obs[0].features @ np.array([t[k] for k in ("step_s", "sequence_s", "prefill_token_s",
                                                                          "ttft_offset_s")])
        return float(np.max(np.abs(pred / noisy - 1)))

    assert 0 < floor <= worst(fit.terms) + 1e-12
    assert worst(terms) == pytest.approx(floor, rel=1e-6)


def test_the_fit_says_how_far_each_term_is_told_from_the_device(runs):
    """The stand-in device prices a prompt at exactly 1 us per token: with that price free, nothing in the rows tells
    a host cost per prompt token from it (an infinite standard error), though the fit with the device held fixed
    recovers the term; the decode terms are told apart (their features are not proportional to decode time)."""
    obs = [run_observations(read_bench(p), True, device_s) for p in runs.values()]
    fit = fit_engine_terms(obs)
    assert fit.terms["prefill_token_s"] == pytest.approx(TRUE["prefill_token_s"], rel=0.05)
    assert fit.confounded["prefill_token_s"] == np.inf
    assert set(fit.confounded) == {"step_s", "sequence_s", "prefill_token_s"}
    assert "prefill_token_s to +-inf ms" in fit.describe_confounded()


def test_a_device_price_not_proportional_to_the_prompt_leaves_the_term_determined(tmp_path):
    """With attention that grows with the prompt's square, the prompt's device time is no multiple of its tokens:
    the per-prompt-token term keeps a finite standard error with that price free, and no smaller one than with the
    price held fixed."""
    def quadratic(shape: StepShape) -> np.ndarray:
        return device_s(shape) + 2e-9 * np.asarray(shape.prefill_pairs, float)

    rng = np.random.default_rng(5)
    prompts, outputs = rng.integers(16, 2048, 80), rng.integers(4, 40, 80)
    arrivals = np.cumsum(rng.exponential(0.15, 80))
    path = write_json(tmp_path, "poisson", *engine_run(arrivals, prompts, outputs, TRUE, device=quadratic), prompts,
                      outputs)
    obs = run_observations(read_bench(path), True, quadratic)
    jitter = 1 + 0.01 * np.random.default_rng(1).standard_normal(obs.rows)  # 1% timing noise, so errors are not 0
    fit = fit_engine_terms([dataclasses.replace(obs, measured_s=obs.measured_s * jitter)])
    assert fit.terms["prefill_token_s"] == pytest.approx(TRUE["prefill_token_s"], rel=0.05)
    # Freeing the device's price widens the error (0.05 -> 0.27 us here) but leaves the 20 us term determined.
    assert fit.stderr["prefill_token_s"] < fit.confounded["prefill_token_s"] < 0.1 * fit.terms["prefill_token_s"]
    # This device's decode time is almost a multiple of the sequences (0.5 ms each): sequence_s is barely told apart.
    assert fit.confounded["sequence_s"] > 10 * fit.stderr["sequence_s"]


def test_the_prior_is_the_base_profiles_terms_where_it_prices_them_in_the_fits_form():
    from capsim.calibration.engine_cal import prior_terms
    from capsim.specs.engine import get_engine

    cpu = get_engine("vllm-cpu")
    assert prior_terms(cpu) == {"ttft_offset_s": cpu.ttft_offset_s, "step_s": cpu.cpu["step"][0],
                                "sequence_s": cpu.cpu["step"][1], "prefill_token_s": cpu.cpu["step"][2]}
    v02 = get_engine("vllm-0.2")  # phases, Ray worker and server calls: not the fit's form, so only the offset
    assert prior_terms(v02) == {"ttft_offset_s": v02.ttft_offset_s}
