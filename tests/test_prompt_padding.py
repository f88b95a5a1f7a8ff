"""vLLM 0.2.2-0.3.x pad the prompts of a prefill batch to its longest (EngineProfile.max_paddings)."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import SpecError, get_accelerator, get_model, load_calibration
from capsim.sim.serving import ServeConfig, Workload, engine_plan, simulate
from capsim.specs.engine import EngineProfile, get_engine

MODEL, ACC = get_model("opt-13b"), get_accelerator("A100-SXM4-80GB")
PERF = load_calibration("A100-SXM4-80GB").perf()


def _first_tokens(prompts: list[int], engine: EngineProfile) -> np.ndarray:
    """First-token times of requests that all arrive at t=0 (in this order), served by one replica."""
    n = len(prompts)
    wl = Workload("burst", np.array(prompts), np.full(n, 4), np.zeros(n))
    res = simulate(MODEL, engine_plan(engine, MODEL, ACC), ACC, PERF, wl, ServeConfig(engine=engine))
    return res.requests["ttft_s"].to_numpy()


def test_vllm_02_pads_and_caps_the_padding() -> None:
    eng = get_engine("vllm-0.2")
    unpadded = eng.with_(max_paddings=None)
    assert eng.max_paddings == 256 and get_engine("vllm-v0").max_paddings is None
    # 400 and 100 tokens: padding 300 > 256, so the second prompt waits for the next step; packed, they share one.
    apart, packed = _first_tokens([400, 100], eng), _first_tokens([400, 100], unpadded)
    assert apart[1] > apart[0] * 1.05 and packed[1] == pytest.approx(packed[0], rel=1e-12)
    # 400 and 300 tokens: padding 100, one step computing 2 x 400 rows, dearer than 700 packed tokens.
    together, packed = _first_tokens([400, 300], eng), _first_tokens([400, 300], unpadded)
    assert together[0] == pytest.approx(together[1], rel=1e-12) and together[0] > packed[0] * 1.05
    # One prompt alone is never padded.
    assert _first_tokens([400], eng)[0] == pytest.approx(_first_tokens([400], unpadded)[0], rel=1e-12)


def test_padding_needs_the_prefill_priority_scheduler() -> None:
    with pytest.raises(SpecError, match="max_paddings"):
        get_engine("vllm").with_(max_paddings=256)
    with pytest.raises(SpecError, match="max_paddings"):
        get_engine("vllm-0.2").with_(max_paddings=-1)


def test_unpadded_releases_are_not_covered() -> None:
    from capsim.specs.engine import engine_release

    assert engine_release("vllm", "0.2.3").name == "vllm-0.2"
    with pytest.raises(SpecError):
        engine_release("vllm", "0.2.1")


def test_max_paddings_flag_sets_the_cap_where_the_release_has_one() -> None:
    """--max-paddings (vLLM 0.2.3 vllm/engine/arg_utils.py L31, L171-174): applied to vllm-0.2, refused by a release
    that packs prompts without padding, and never negative."""
    from capsim.specs.engine_flags import apply_flags, parse_flags

    eng = get_engine("vllm-0.2")
    assert apply_flags(eng, parse_flags("max_paddings=524288"), "fp16").engine.max_paddings == 524288
    assert apply_flags(eng, parse_flags("max_paddings=0"), "fp16").engine.max_paddings == 0
    with pytest.raises(SpecError, match="max_paddings"):
        apply_flags(get_engine("vllm-0.4"), parse_flags("max_paddings=256"), "fp16")
    with pytest.raises(SpecError, match="max_paddings"):
        apply_flags(eng, parse_flags("max_paddings=-1"), "fp16")
    # A cap of 99 splits the 400 + 300 batch (100 paddings) that the default 256 lets share one step.
    capped = apply_flags(eng, parse_flags("max_paddings=99"), "fp16").engine
    assert _first_tokens([400, 300], eng)[1] == pytest.approx(_first_tokens([400, 300], eng)[0], rel=1e-12)
    apart = _first_tokens([400, 300], capped)
    assert apart[1] > apart[0] * 1.05
