"""Published ZeRO-3 / FSDP1 runs capsim had not seen, round 5, priced through the public CLI exactly as a new user
would (issue 12, "FSDP/ZeRO-3 runs ... it must price every one of them", and item 6): ``capsim validate training
--file tests/data/unseen_5/training_zero3.csv --json`` with the profile and the datasheet calibrations. The rows:
the PyTorch FSDP paper's minGPT-175B on 128-512 A100s (Zhao et al. 2023, Sec. 5.4's stated TFLOPS, PyTorch 2.0), and
the ZeRO baseline of DeepSpeed's ZeRO++ tutorial (18B GPT-2 on 64 V100s, one 512-token sequence per GPU, DeepSpeed
0.10.0). Sources, settings and left-out runs are in the file's header.

The checks are tests/unseen_rows.py's: every row priced, each row's error pinned to 1 point of the figure
measured when it was added, within 15% or a strict xfail whose reason carries that figure.
Nothing in capsim was tuned to these rows."""

import pytest
from unseen_rows import DATA, RULES, assert_all_priced, assert_pinned, assert_within, cases, report

FILE = DATA / "unseen_5" / "training_zero3.csv"


def _report(rule: str) -> dict:
    return report(FILE, rule)


# (row index, what the row is, error % when added with the profile and the datasheet calibrations; positive =
# capsim predicts faster). A100 has a profile calibration; V100 only its datasheet (both rules give the datasheet).
ROWS = [
    (0, "FSDP paper minGPT-175B 128 A100 batch 1 (>173 TFLOPS)", 21.3, 23.1),
    (1, "FSDP paper minGPT-175B 512 A100 batch 1 (>173 TFLOPS)", 18.1, 19.8),
    (2, "FSDP paper minGPT-175B 256 A100 batch 2 (>186 TFLOPS)", 23.4, 26.1),
    (3, "FSDP paper minGPT-175B 512 A100 batch 2 (>186 TFLOPS)", 23.4, 26.1),
    (4, "ZeRO++ tutorial ZeRO-3 baseline 18B GPT-2 64 V100 (9.956 s/iteration)", -78.9, -78.9),
]
_FSDP = ("PyTorch 2.0 FSDP1, GPT-3 175B shape, full recompute, one or two 2048-token sequences per GPU: capsim's "
         "step is compute-bound (exposed ZeRO-3 traffic ~1 s of 14-26 s), its GEMMs at ~73% of the A100 bf16 peak "
         "against the paper's ~55-60% 'hardware utilization'. Not explained. Not priced, as the paper does not state "
         "them: its FLOP count (counted without the recomputed forward, capsim's model TFLOPS are -11.4% to -5.3% off), minGPT's own "
         "attention (q @ k^T, masked_fill, softmax, dropout 0.1: ~-6% at batch 2 when priced unfused with dropout), "
         "and whether '2Tb/s RoCE' is per node")
WHY = {
    0: _FSDP, 1: _FSDP, 2: _FSDP, 3: _FSDP,
    4: ("DeepSpeed ZeRO-3 at 512 tokens per GPU: capsim prices 2.10 s (compute 1.0 s, exposed ZeRO traffic 1.08 s) "
        "on the catalog's V100-SXM2 nodes (8 per node, 12.5 GB/s per GPU between nodes); the log's own timers give "
        "3.36 s forward and 6.46 s backward. Not priced: DeepSpeed's per-module all-gathers in 5e7-element prefetch "
        "windows (priced per block), the run's 16-GPU V100-SXM3 nodes and its unstated network (with the ZeRO++ "
        "paper's 4 x 100 Gb/s per 16-GPU node, 3.125 GB/s per GPU: 5.69 s, -42.8%)"),
}


@pytest.mark.parametrize("rule", RULES)
def test_every_unseen_zero3_row_is_priced(rule):
    assert_all_priced(FILE, ROWS, rule)


@pytest.mark.parametrize("rule", RULES)
def test_an_unseen_zero3_row_stays_where_it_was_added(rule):
    assert_pinned(FILE, ROWS, rule)


@pytest.mark.parametrize(("index", "rule"), cases(ROWS, WHY))
def test_an_unseen_zero3_row_is_within_tolerance(index, rule):
    assert_within(FILE, index, rule)


@pytest.mark.parametrize("rule", RULES)
def test_the_rows_are_priced_by_the_releases_they_name(rule):
    notes = [r["note"] for r in _report(rule)["rows"]]
    assert all(n.startswith("fsdp-pytorch-2.0;") for n in notes[:4]) and notes[4].startswith("deepspeed-0.10;")


def test_fsdp_2_0_shares_the_2_3_data_and_cites_the_paper():
    # Was: 'unknown fsdp release pytorch-2.0' (only fsdp-pytorch-2.3 described FSDP1)
    from capsim.analytic.training.framework import get_release, release_for
    from capsim.analytic.training.release import BEHAVIOUR

    old, new = get_release("fsdp-pytorch-2.3"), get_release("fsdp-pytorch-2.0")
    assert release_for("fsdp", "pytorch-2.0") is new and release_for("fsdp", "pytorch-2.3") is old
    assert new.framework == old.framework.with_(name=new.name)  # the same behaviour, not a copy that may drift
    assert set(BEHAVIOUR) <= set(new.cite)
    for key in ("zero3_prefetch", "overlap_param_gather", "reshard_after_forward"):
        assert "2304.11277" in new.cite[key] and new.cite[key] != old.cite[key]
    assert new.defaults["zero_stage"].value == 3 and new.date < old.date


def test_deepspeed_0_10_is_0_14_but_reduces_zero_1_2_slices_to_their_owners():
    # Was: 'unknown deepspeed release deepspeed-0.10.0' (deepspeed-0.14 covers 0.14.0-0.16.4 only)
    from capsim.analytic.training.framework import get_release, release_for

    old, new = get_release("deepspeed-0.14"), get_release("deepspeed-0.10")
    for name in ("deepspeed-0.8.2", "deepspeed-0.9.5", "deepspeed-0.10.0", "deepspeed-0.10.3"):
        assert release_for("deepspeed", name) is new
    for name in ("deepspeed-0.8.1", "deepspeed-0.11.0"):
        with pytest.raises(ValueError):
            release_for("deepspeed", name)
    assert old.framework.zero_grad_allreduce and not new.framework.zero_grad_allreduce
    assert new.framework == old.framework.with_(name=new.name, zero_grad_allreduce=False)
    assert all("v0.10.0" in new.cite[k] for k in ("zero3_prefetch", "zero3_reuse_elements", "grad_bucket_elements",
                                                    "zero_grad_allreduce", "overlap_grad_reduce_min_zero"))
    for zeropp in ("--zero_optimization.zero_quantized_weights=true", "--zero_optimization.zero_hpz_partition_size=16"):
        with pytest.raises(ValueError):  # ZeRO++ is not priced: refused, not priced as plain ZeRO-3
            new.configure(zeropp)


def test_zero_2_on_deepspeed_0_10_moves_a_reduce_scatter_not_an_all_reduce():
    from capsim import TrainPlan, get_accelerator, get_model
    from capsim.analytic.training import step_time
    from capsim.calibration import perf_for
    from capsim.specs.hardware import Cluster

    model, acc = get_model("llama-2-7b"), get_accelerator("a100")
    cluster, perf = Cluster(acc, 64), perf_for(acc, acc.name)
    plan = TrainPlan(dp=64, zero_stage=2, global_batch=64)
    new, old = (step_time(model, plan, cluster, perf, framework=f) for f in ("deepspeed-0.10", "deepspeed-0.14"))
    # ZeRO-2 without overlap_comm (its default below stage 3): every bucket's reduce is exposed
    assert 0 < new.zero_comm_s < 0.75 * old.zero_comm_s  # a reduce-scatter moves about half an all-reduce's bytes


def test_zero3_rows_expose_more_as_the_per_gpu_batch_shrinks_under_both_presets():
    """Issue 12 item 6 on the new presets: at a fixed global batch, more GPUs leave less compute per block to hide
    the same per-block gathers and reduce-scatters behind."""
    from capsim import TrainPlan, get_accelerator, get_model
    from capsim.analytic.training import step_time
    from capsim.calibration import perf_for
    from capsim.specs.hardware import Cluster

    model, acc = get_model("llama-2-7b"), get_accelerator("a100")
    for name in ("fsdp-pytorch-2.0", "deepspeed-0.10"):
        shares = []
        for gpus in (8, 32, 128):
            plan = TrainPlan(dp=gpus, zero_stage=3, micro_batch=128 // gpus, global_batch=128, seq_len=2048)
            r = step_time(model, plan, Cluster(acc, gpus), perf_for(acc, acc.name), framework=name)
            shares.append(r.zero_comm_s / r.step_s)
        assert shares[0] < shares[1] < shares[2], (name, shares)
