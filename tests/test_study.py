import math

import numpy as np
import pandas as pd
import pytest

from capsim import SpecError, get_model, param_counts
from capsim.plan.scaling import CHINCHILLA_2022, EPOCH_2024, chinchilla_loss, compute_optimal
from capsim.study import expand, sweep


def params_of(name: str, scale: int = 1) -> dict:
    return {"params": param_counts(get_model(name)).total * scale}


def test_expand_grid_is_cartesian_in_key_order():
    assert expand({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    with pytest.raises(SpecError, match="grid.a"):
        expand({"a": 3})


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_sweep_returns_one_row_per_point_with_errors_as_rows(backend):
    df = sweep(params_of, {"name": ["llama-2-7b", "no-such-model"], "scale": [1, 2]}, backend=backend, workers=2)
    assert isinstance(df, pd.DataFrame) and len(df) == 4
    assert list(df["name"]) == ["llama-2-7b", "llama-2-7b", "no-such-model", "no-such-model"]
    assert df.loc[1, "params"] == 2 * df.loc[0, "params"]
    assert df["error"].iloc[2].startswith("model: unknown model") and math.isnan(df["params"].iloc[2])


@pytest.mark.slow
def test_sweep_on_a_local_ray_instance():
    import ray  # the dev extra installs capsim[ray]
    # Ray workers import fn by module path, so the study function lives in capsim (not in this test file).
    df = sweep(compute_optimal, {"flops": [1e21, 1e23]}, backend="ray")
    assert list(df["params"]) == [compute_optimal(c).params for c in (1e21, 1e23)]
    assert not ray.is_initialized(), "the sweep shuts down the Ray instance it started"


def test_chinchilla_compute_optimal_matches_the_paper():
    # Chinchilla itself (70B params, 1.4T tokens) used ~5.76e23 FLOPs. The closed form must be the minimum of
    # the loss along C = 6 N D: check it against a brute-force scan of N.
    c = 5.76e23
    opt = compute_optimal(c)
    n = np.logspace(9, 12, 30001)
    scan = n[np.argmin(chinchilla_loss(n, c / (6 * n)))]
    assert opt.params == pytest.approx(scan, rel=1e-3)
    assert 20e9 < opt.params < 80e9
    assert opt.params * opt.tokens * 6 == pytest.approx(5.76e23)
    # Loss falls with compute and the optimum beats a lopsided split of the same budget.
    assert compute_optimal(1e24).loss < opt.loss
    assert chinchilla_loss(opt.params, opt.tokens) < chinchilla_loss(opt.params * 4, opt.tokens / 4)
    assert compute_optimal(1e24, EPOCH_2024).fit != CHINCHILLA_2022.source
