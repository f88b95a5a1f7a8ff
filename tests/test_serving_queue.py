"""Queueing check: static batching of one request at a time under Poisson arrivals is an M/D/1 queue."""

from __future__ import annotations

import numpy as np

from capsim import get_accelerator, get_model, load_calibration
from capsim.sim.serving import Lengths, ServeConfig, Workload, engine_plan, renewal, simulate


def test_mean_queueing_delay_matches_pollaczek_khinchine():
    model, acc = get_model("llama-2-7b"), get_accelerator("a100")
    perf = load_calibration("a100").perf()
    plan = engine_plan("vllm", model, acc, max_batch=1)
    p, o, n = 512, 32, 60_000
    # Deterministic service: one prefill step and o - 1 decode steps of one sequence.
    probe = simulate(model, plan, acc, perf, Workload("one", np.array([p]), np.array([o]), np.array([0.0])),
                     ServeConfig(scheduler="static"))
    service_s = float(probe.requests["e2e_s"].iloc[0])
    rho = 0.5
    rng = np.random.default_rng(11)
    arrivals = renewal(rho / service_s, n, None, rng)
    prompt, output = Lengths.fixed(p, o).draw(n, rng)
    res = simulate(model, plan, acc, perf, Workload("md1", prompt, output, arrivals), ServeConfig(scheduler="static"))
    e2e = res.requests["e2e_s"] - res.requests["queue_s"]
    np.testing.assert_allclose(e2e, service_s, rtol=1e-9)  # every request is served in exactly S
    wq_pk = rho * service_s / (2 * (1 - rho))  # M/D/1: Wq = rho S / (2 (1 - rho)) (Pollaczek-Khinchine)
    measured = float(res.requests["queue_s"].mean())
    assert abs(measured / wq_pk - 1) < 0.05, (measured, wq_pk)
