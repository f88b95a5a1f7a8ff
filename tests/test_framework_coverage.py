"""Which Megatron-Core releases the presets cover, as read from each core tag (releases_mcore.py): every covered
name resolves to the preset whose facts were checked there, and a release nobody read stays an error."""

from __future__ import annotations

import pytest

from capsim.analytic.training import RELEASES
from capsim.analytic.training.framework import release_for
from capsim.analytic.training.release import BEHAVIOUR, LAYOUT_SETTINGS
from capsim.errors import SpecError

COVERED = {
    "megatron-core-0.8.0": "megatron-core-0.8.0",
    "megatron-core-0.9.0": "megatron-core-0.9.0",
    "megatron-core-0.10.0": "megatron-core-0.10.0",
    "megatron-core-0.11.0": "megatron-core-0.11.0",
    "megatron-core-0.12.0": "megatron-core-0.12.0",
    "megatron-core-0.12.1": "megatron-core-0.12.1",
    "megatron-core-0.12.2": "megatron-core-0.12.1",
    "megatron-core-0.12.3": "megatron-core-0.12.1",
    "megatron-core-0.13.0": "megatron-core-0.13.0",
    "megatron-core-0.13.1": "megatron-core-0.13.0",
    "megatron-core-0.14.0": "megatron-core-0.14.0",
    "megatron-core-0.15.0": "megatron-core-0.14.0",
    "megatron-core-0.15.3": "megatron-core-0.14.0",
    "megatron-core-0.16.0": "megatron-core-0.14.0",
    "megatron-core-0.16.1": "megatron-core-0.14.0",
}


@pytest.mark.parametrize(("software", "preset"), COVERED.items())
def test_covered_release_resolves_to_the_preset_read_there(software: str, preset: str) -> None:
    assert release_for("megatron-core", software).software == preset


@pytest.mark.parametrize("software", ["megatron-core-0.5.0", "megatron-core-0.7.0", "megatron-core-0.12.4",
                                      "megatron-core-0.13.2", "megatron-core-0.16.2", "megatron-core-0.17.0",
                                      "megatron-core-0.17.1", "megatron-core-0.19.0"])
def test_release_nobody_read_is_an_error(software: str) -> None:
    with pytest.raises(SpecError, match="unknown megatron-core release"):
        release_for("megatron-core", software)


def test_every_new_preset_cites_its_own_tag_for_every_fact() -> None:
    for software in ("megatron-core-0.9.0", "megatron-core-0.10.0", "megatron-core-0.11.0", "megatron-core-0.12.0",
                     "megatron-core-0.12.1", "megatron-core-0.13.0"):
        rel = release_for("megatron-core", software)
        tag = "ML@core_v" + software.removeprefix("megatron-core-")
        assert set(rel.cite) == set(BEHAVIOUR) and set(rel.defaults) == set(LAYOUT_SETTINGS)
        for key in ("attention", "dropout", "overlap_grad_reduce", "overlap_param_gather", "overlap_p2p",
                    "uneven_pipeline", "fp8_scaling", "moe_combine_saves"):
            assert tag in rel.cite[key], (software, key)


def test_facts_that_change_between_tags() -> None:
    fw = {s: release_for("megatron-core", s) for s in COVERED.values()}
    # uneven first/last stages from core 0.9 (--decoder-first-pipeline-num-layers), not in 0.8
    assert not fw["megatron-core-0.8.0"].framework.uneven_pipeline
    assert all(fw[s].framework.uneven_pipeline for s in fw if s != "megatron-core-0.8.0")
    # the combine stops saving the router probabilities at 0.12.1 (cherry-pick d5d00fd)
    assert fw["megatron-core-0.12.0"].framework.moe_combine_saves
    assert not fw["megatron-core-0.12.1"].framework.moe_combine_saves
    # forced balancing draws random logits (RandomSTE) from 0.13
    assert not fw["megatron-core-0.12.1"].framework.moe_random_routing
    assert fw["megatron-core-0.13.0"].framework.moe_random_routing
    # flags exist only where their tag declares them
    assert "--fp8-param-gather" in fw["megatron-core-0.9.0"].flags
    assert "--expert-tensor-parallel-size" not in fw["megatron-core-0.9.0"].flags
    assert "--moe-grouped-gemm" not in fw["megatron-core-0.9.0"].flags  # no Fp8Padding before 0.10
    assert "--account-for-embedding-in-pipeline-split" not in fw["megatron-core-0.10.0"].flags
    assert "--account-for-embedding-in-pipeline-split" in fw["megatron-core-0.11.0"].flags
    assert "--fp8-recipe" not in fw["megatron-core-0.11.0"].flags and "--fp8-recipe" in fw["megatron-core-0.12.0"].flags
    assert "--use-custom-fsdp" in fw["megatron-core-0.12.0"].flags
    with pytest.raises(SpecError, match="unknown value"):
        fw["megatron-core-0.11.0"].configure("--moe-token-dispatcher-type=flex")  # flex arrived in 0.12
    framework, layout = fw["megatron-core-0.10.0"].configure("--overlap-grad-reduce --use-distributed-optimizer")
    assert framework.overlap_grad_reduce and layout["distributed_optimizer"] and layout["micro_batch"] == 1


def test_new_presets_are_registered_once() -> None:
    names = [r.software for r in RELEASES.values()]
    assert len(names) == len(set(names))
