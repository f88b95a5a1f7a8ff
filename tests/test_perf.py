import json

import numpy as np
import pytest

from capsim import StepBatch, get_model, load_calibration, serving_layer_ops
from capsim.analytic.ops import OpKind
from capsim.calibration import available, calibrations_dir
from capsim.calibration.datasheet import datasheet_calibration
from capsim.specs.catalog import accelerators


def test_a_datasheet_calibration_ships_for_every_accelerator():
    shipped = available()
    for name, acc in accelerators().items():
        assert name in shipped, name
        on_disk = json.loads(shipped[name].read_text())
        fresh = datasheet_calibration(acc).to_dict()
        on_disk.pop("created"), fresh.pop("created")
        assert json.loads(json.dumps(fresh)) == on_disk, f"regenerate {name}: capsim.calibration.datasheet"
        assert on_disk["kind"] == "datasheet"


def test_roofline_regimes():
    perf = load_calibration("A100-SXM4-80GB").perf()
    big = perf.gemm_s(8192, 8192, 8192, "bf16")
    assert 2 * 8192**3 / big / 312e12 == pytest.approx(0.8 * (8192 / (8192 + 128)) ** 3, rel=0.01)
    # decode attention over a long KV cache is bound by reading the cache
    model = get_model("llama-2-7b")
    attn = next(op for op in serving_layer_ops(model, StepBatch.decode(64, 4000)) if op.kind is OpKind.ATTENTION)
    t = perf.op_s(attn)
    assert t == pytest.approx(perf.memory_s(attn.bytes) , rel=0.05)


def test_collectives_follow_alpha_beta():
    perf = load_calibration("H100-SXM5-80GB").perf()
    assert perf.collective_s("all_reduce", 1e9, 1) == 0.0
    t8 = perf.collective_s("all_reduce", 1e9, 8)
    link = perf.link("all_reduce", 8)
    assert t8 == pytest.approx(link.alpha_s + 1e9 * 2 * 7 / 8 / link.bus_bw_bytes_per_s)
    vec = perf.collective_s("all_gather", np.array([1e6, 1e9]), np.array([2, 8]))
    assert vec.shape == (2,) and vec[1] > vec[0]


def test_calibration_lookup_errors():
    with pytest.raises(KeyError, match="calibration"):
        load_calibration("no-such-calibration")
    assert calibrations_dir().name == "calibrations"
