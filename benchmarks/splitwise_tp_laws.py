"""Can a term that grows with TP carry the splitwise suite's TP2 fit to TP4 and TP8? Three checks on its rows.

Reads the suite's rows (capsim/data/validation/engine-calibration/splitwise_tp*.csv; Splitwise's profiled Llama-2-70B
step times) and prices each with capsim's device model and the engine's host terms left out, as the fit does::

    .venv/bin/python benchmarks/splitwise_tp_laws.py

``name: value`` lines. The TP laws tried, each a column beside the fit's step, sequence and prompt-token terms:

- ``lat``: NCCL's ring latency, 2(n-1) hops per all-reduce (NCCL 2.18.6 src/graph/tuning.cc: ring all-reduce
  latency = base + nsteps x per-hop latency, nsteps = 2(nRanks-1)), times the step's 2L+1 all-reduces;
- ``bw``: the ring's bytes per rank, 2(n-1)/n x the all-reduced bytes (the same file's ring bandwidth ratio);
- ``comm``: a multiplier on capsim's priced TP all-reduces (Vidur's measured NCCL timings);
- ``gemm``, ``attn``: multipliers on capsim's GEMM+norm and attention time (a device that differs from the
  calibration; not a TP law, tried to show that no device scale fits either).

- ``condition_tp2[GPU,+TERM]``: the scaled condition number of the TP2 rows' design with the term added; above the fit's
  MAX_CONDITION (1e3) the fit refuses: a term fixed by n cannot be told from the step and token terms at one n.
- ``floor_one_law[GPU,TERMS]``: the least worst-row relative error (%) over every TP2, TP4 and TP8 row of the GPU,
  with one value of each term for all TPs, chosen on all the rows (checked ones included): a floor for any fit of
  that law, on any of these rows.
- ``floor_per_tp[GPU,TP,TERMS]``: the same over one TP's rows with the terms free per TP.
"""

from __future__ import annotations

import numpy as np
from _common import report
from scipy.optimize import linprog

from capsim.analytic.serving import iteration_time
from capsim.calibration.engine_cal import without_host
from capsim.calibration.engine_fit import MAX_CONDITION
from capsim.validation.bench_suites import _step_rows, _take, deployment, load_suite

HOST = ("step", "seqs", "ptok")


def rows() -> dict[str, list[dict[str, float]]]:
    """Per GPU, each row's measured and device seconds and the columns of every term."""
    s = load_suite("splitwise")
    out: dict[str, list[dict[str, float]]] = {}
    for f in ("splitwise_tp2.csv", "splitwise_tp4.csv", "splitwise_tp8.csv"):
        meta, shape, y = _step_rows(s.folder / f)
        for i, r in enumerate(meta):
            gpu, n = r["gpu"], int(r["tp"])
            d, _ = deployment({**s.spec, "accelerator": gpu, "calibration": s.spec["calibration"][gpu], "tp": n},
                              s.folder)
            one = _take(shape, np.array([i]))
            it = iteration_time(d.model, d.plan, d.perf, one, without_host(d.engine), d.accelerator)
            v = {k: float(np.asarray(x, float).ravel()[0]) for k, x in it.to_dict().items() if k.endswith("_s")}
            tokens = float(np.asarray(one.new_tokens).ravel()[0])
            reduces = 2 * d.model.layers + 1
            out.setdefault(gpu, []).append({
                "tp": n, "y": float(y[i]), "dev": float(np.asarray(it.total_s).ravel()[0]), "step": 1.0,
                "seqs": float(np.asarray(one.sequences).ravel()[0]),
                "ptok": float(np.asarray(one.prefill_tokens).ravel()[0]),
                "lat": reduces * 2.0 * (n - 1), "bw": reduces * tokens * d.model.hidden * 2 * 2 * (n - 1) / n,
                "comm": v["tp_comm_s"], "gemm": v["layers_s"], "attn": v["attention_s"]})
    return out


def _system(rs: list[dict[str, float]], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([r["y"] for r in rs])
    a = np.array([[r[k] for k in names] for r in rs]) / y[:, None]
    return a, (y - np.array([r["dev"] for r in rs])) / y


def condition(rs: list[dict[str, float]], names: tuple[str, ...]) -> float:
    a, _ = _system(rs, names)
    s = np.linalg.svd(a / np.linalg.norm(a, axis=0), compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def floor(rs: list[dict[str, float]], names: tuple[str, ...]) -> float:
    """Least worst-row relative error (%) over non-negative values of the terms (a Chebyshev fit by LP)."""
    a, b = _system(rs, names)
    k, ones = a.shape[1], np.ones((len(b), 1))
    res = linprog(np.r_[np.zeros(k), 1.0], A_ub=np.vstack([np.hstack([a, -ones]), np.hstack([-a, -ones])]),
                  b_ub=np.r_[b, -b], bounds=[(0.0, None)] * (k + 1), method="highs")
    return 100 * float(res.x[-1])


def main() -> None:
    for gpu, rs in rows().items():
        tp2 = [r for r in rs if r["tp"] == 2]
        for extra in ("lat", "bw", "comm"):
            c = condition(tp2, (*HOST, extra))
            report(f"condition_tp2[{gpu},+{extra}]", f"{c:.3g} ({'refused' if c > MAX_CONDITION else 'fitted'})")
        for extra in ((), ("lat", "bw"), ("lat", "bw", "comm", "gemm", "attn")):
            report(f"floor_one_law[{gpu},{'+'.join((*HOST, *extra))}]", f"{floor(rs, (*HOST, *extra)):.1f}%")
        for n in (2, 4, 8):
            one = [r for r in rs if r["tp"] == n]
            for extra in ((), ("comm", "gemm", "attn")):
                report(f"floor_per_tp[{gpu},tp{n},{'+'.join((*HOST, *extra))}]",
                       f"{floor(one, (*HOST, *extra)):.1f}% over {len(one)} rows")


if __name__ == "__main__":
    main()
