"""Published DeepSeek-V3 pre-training runs capsim had not seen, round 5, priced through the public CLI exactly as a
new user would (issue 12, "capsim will also be checked on published runs it has never seen ... MoE: it must price
every one of them"): ``capsim validate training --file tests/data/unseen_5/training_deepseek.csv --json`` with the
profile and the datasheet calibrations. The rows: Megatron-Bridge's DeepSeek-V3 numbers the shipped suites left out
because capsim did not model multi-token prediction (26.02-26.06 MXFP8 on GB300, GB200, B300 and B200 with one MTP
layer in the last pipeline stage, 25.11 B200 "w/ MTP" and GB200 "w/o MTP", 25.09 H100 "(dropless)" with its gradient
reduce-scatter overlap off). Sources, each tag's flags and the 14 left-out numbers are in the file's header.

The checks are tests/unseen_rows.py's: every row priced, each row's error pinned to 1 point of the figure
measured when it was added, within 15% or a strict xfail whose reason carries that figure.
Nothing in capsim was tuned to these rows."""

import pytest
from unseen_rows import DATA, RULES, assert_all_priced, assert_pinned, assert_within, cases, report

FILE = DATA / "unseen_5" / "training_deepseek.csv"


def _report(rule: str) -> dict:
    return report(FILE, rule)


# (row index, what the row is, error % when added with the profile and the datasheet calibrations; positive =
# capsim predicts faster). Every row but the last is a Blackwell part, which has only its datasheet (both rules give it).
ROWS = [
    (0, "25.11 GB200 w/o MTP PP4 VP4 EP64 BF16 (unseen_4 row 15)", 23.0, 23.0),
    (1, "25.11 B200 w/ MTP PP16 EP8 alltoall GBS 2048 FP8-MX", 38.4, 38.4),
    (2, "26.02 GB300 PP2 VP8 EP32 MBS2 MXFP8", 1.4, 1.4),
    (3, "26.02 GB200 PP4 VP4 EP64 MXFP8", 9.5, 9.5),
    (4, "26.02 B300 PP16 EP8 MXFP8", 13.9, 13.9),
    (5, "26.02 B200 PP16 EP8 MXFP8", 19.2, 19.2),
    (6, "26.02.01 GB300 PP2 VP8 EP32 MBS2 MXFP8", -0.3, -0.3),
    (7, "26.02.01 GB200 PP4 VP4 EP64 MXFP8", 7.7, 7.7),
    (8, "26.02.01 B300 PP16 EP8 MXFP8", 9.7, 9.7),
    (9, "26.02.01 B200 PP16 EP8 MXFP8", 14.9, 14.9),
    (10, "26.04 GB300 PP2 VP8 EP32 MBS2 MXFP8", -5.8, -5.8),
    (11, "26.04 GB200 PP4 VP4 EP64 recompute mlp MXFP8", 4.7, 4.7),
    (12, "26.04 B300 PP16 EP8 MXFP8", 8.6, 8.6),
    (13, "26.04 B200 PP16 EP8 MXFP8", 13.9, 13.9),
    (14, "26.04.01 GB300 PP2 VP8 EP32 MBS2 MXFP8", -6.3, -6.3),
    (15, "26.04.01 GB200 PP4 VP4 EP64 recompute mlp MXFP8", 3.2, 3.2),
    (16, "26.04.01 B300 PP8 EP8 MBS2 MXFP8", 9.2, 9.2),
    (17, "26.04.01 B200 PP8 VP2 EP32 DeepEP A2A overlap MXFP8", 4.6, 4.6),
    (18, "26.06 B300 PP8 EP8 MBS2 MXFP8", 6.6, 6.6),
    (19, "25.09 H100 dropless TP2 PP8 VP4 EP64 DeepEP A2A overlap grad-reduce overlap off FP8-CS", 20.4, 21.6),
]
WHY = {  # what the miss is, where it has been looked at
    0: "as tests/test_unseen_4.py row 15: DeepSeek-V3 on GB200 (EP 64 with HybridEP in the 72-GPU NVLink domain), "
       "BF16 without MTP; the MXFP8 GB200 rows of the same layout with MTP are within 10%; not investigated",
    1: "25.11 B200 with MTP, PP 16 (no VP: blocking pipeline sends over the 400 Gb/s NICs, priced), EP 8 over the "
       "all-to-all dispatcher (v0.2.0 applies HybridEP only to devices named GB200/GB300), GBS 2048 (128 micro-"
       "batches): capsim's step is 11.07 s (compute 7.85 s, EP all-to-all 1.39 s, pipeline sends 0.38 s, bubble "
       "1.11 s; middle stage 77 ms a micro-batch) against 15.3 s implied by the published 2139 tokens/s/GPU (~110 "
       "ms a micro-batch, where the 26.02 HybridEP run of the same layout implies ~91). Looked at, none found to "
       "price: the B200 config (MB@v0.2.0 configs/deepseek/workload_base_configs.py L63-74) sets only PP, EP, GBS, "
       "recompute mla_up_proj, no CUDA graphs; the DeepSeek provider's moe_shared_expert_overlap True (deepseek_"
       "provider.py L78, unpriced) would make the run faster, not slower; host issue is priced (forward host-bound)",
    5: "26.02 B200 at PP 16 EP 8 (one 8-GPU NVLink node per expert-parallel group, 16 stages of 4 layers, 256 "
       "micro-batches, no VP: each micro-batch's send and receive block, MB@v0.3.0 comm_overlap.py L450-457, "
       "across the 400 Gb/s NICs: 1.5 ms a hop, 0.77 s a step): capsim's step is 20.44 s (middle stage: compute "
       "15.8 s, EP all-to-all 2.3 s, pipeline sends 0.77 s, recompute 0.26 s; bubble 1.1 s; per MoE layer and "
       "micro-batch GPU forward 4.2 ms, backward 8.2 ms, host wait 3.1 ms as the forward's 5.4 ms of issue exceeds "
       "its GPU time, EP 2.25 ms) against 24.4 s implied by 2689; the same config's 26.02.01 and 26.04 runs (2790, "
       "2815) are +14.9% and +13.9%, and B300 at the same layout +8.6% to +13.9%. The configs set nothing else "
       "capsim leaves out (B200_V1 = B300_V1 but the name: hybridep, recompute mla_up_proj, no CUDA graphs)",
    19: "25.09 H100, 1024 GPUs, TP 2 PP 8 VP 4 EP 64 over DeepEP with the A2A overlap, GA 128, layout "
        "'Et|(tt|)*30mL': capsim's step is ~21.0 s (compute 16.1 s, EP all-to-all 3.4 s, TP 0.9 s, bubble 0.25 s, "
        "the DP reduce-scatter exposed by --overlap-grad-reduce=false 0.05 s) against 25.3 s implied by the published "
        "1297 tokens/s/GPU; its FP8 GEMM rates are not measured on H100 (the note's cuBLASLt/DeepGEMM points are "
        "H200 NVL and H800). Not investigated",
}


@pytest.mark.parametrize("rule", RULES)
def test_every_unseen_deepseek_row_is_priced(rule):
    assert_all_priced(FILE, ROWS, rule)


@pytest.mark.parametrize("rule", RULES)
def test_an_unseen_deepseek_row_stays_where_it_was_added(rule):
    assert_pinned(FILE, ROWS, rule)


@pytest.mark.parametrize(("index", "rule"), cases(ROWS, WHY))
def test_an_unseen_deepseek_row_is_within_tolerance(index, rule):
    assert_within(FILE, index, rule)


@pytest.mark.parametrize("rule", RULES)
def test_the_mtp_rows_are_priced_with_their_mtp_layer(rule):
    """Every row but the 25.11 "w/o MTP" one runs the recipe's mtp_num_layers = 1 with an 'm' in its layout."""
    notes = [r["note"] for r in _report(rule)["rows"]]
    assert "--mtp-num-layers" not in notes[0] and "tL " in notes[0]
    assert all("--mtp-num-layers=1" in n and "mL " in n for n in notes[1:])
    assert all(n.startswith(f"megatron-bridge-{c} ") for n, c in zip(notes[2:18], [
        c for c in ("26.02", "26.02.01", "26.04", "26.04.01") for _ in range(4)], strict=True))
