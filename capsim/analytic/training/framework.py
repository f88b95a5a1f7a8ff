"""What a training framework release does that changes step time: configuration facts, dated and cited.

Each preset is one release (``RELEASES``): the code it describes, a source for every behaviour field (the code's
file and commit, a flag's default, a paper section), the documented defaults of settings a run may leave
unpublished, and the flags a run may state. Validation rows name a preset by their ``framework`` and ``software``
columns (``release_for``); nothing is inferred from anything else. Adding a release is one entry of ``RELEASES``
(and one member of ``FrameworkName``).

Citations: ``ML@<commit>`` is github.com/NVIDIA/Megatron-LM at that commit; line numbers are in that file there.
"""

from __future__ import annotations

from enum import StrEnum

from capsim.analytic.training import releases_automodel as automodel
from capsim.analytic.training import releases_bridge as bridge
from capsim.analytic.training import releases_current as current
from capsim.analytic.training import releases_deepspeed as deepspeed
from capsim.analytic.training import releases_fsdp1 as fsdp1
from capsim.analytic.training import releases_fsdp2 as fsdp2
from capsim.analytic.training import releases_legacy as legacy
from capsim.analytic.training import releases_mcore as mcore
from capsim.analytic.training import releases_megatron_lm as megatron_lm
from capsim.analytic.training import releases_meta as meta
from capsim.analytic.training import releases_nemo as nemo
from capsim.analytic.training import releases_torchtitan as titan
from capsim.analytic.training.block_scaling import with_block_scaled
from capsim.analytic.training.release import (
    Framework,
    FrameworkFamily,
    Release,
)
from capsim.errors import SpecError


class FrameworkName(StrEnum):
    """Preset names (``--framework``); each is one release."""

    MEGATRON_2021 = "megatron-lm-2021"
    MEGATRON_2022 = "megatron-lm-2022"
    MEGATRON_2023 = "megatron-lm-2023.01.11"  # Megatron-LM at 285068c8, 2023-01-11 (releases_megatron_lm.py)
    MEGATRON_CORE = "megatron-core-0.8.0"
    MEGATRON_CORE_0_9 = "megatron-core-0.9.0"  # Megatron-LM pretrain_gpt.py at core_v0.9.0 (releases_mcore.py)
    MEGATRON_CORE_0_10 = "megatron-core-0.10.0"  # at core_v0.10.0 (releases_mcore.py)
    MEGATRON_CORE_0_11 = "megatron-core-0.11.0"  # at core_v0.11.0 (releases_mcore.py)
    MEGATRON_CORE_0_12 = "megatron-core-0.12.0"  # at core_v0.12.0 (releases_mcore.py)
    MEGATRON_CORE_0_12_1 = "megatron-core-0.12.1"  # at core_v0.12.1, covering 0.12.1-0.12.3 (releases_mcore.py)
    MEGATRON_CORE_0_13 = "megatron-core-0.13.0"  # at core_v0.13.0, covering 0.13.0-0.13.1 (releases_mcore.py)
    MEGATRON_CORE_0_14 = "megatron-core-0.14.0"  # Megatron-LM pretrain_gpt.py at core_v0.14.0 (releases_mcore.py)
    FSDP = "fsdp-pytorch-2.3"
    FSDP_2_0 = "fsdp-pytorch-2.0"  # PyTorch 2.0 FSDP1 as the FSDP paper describes it (releases_fsdp1.py)
    NEMO_24_07 = "nemo-24.07"  # Megatron-Core through NeMo 1.0 (releases_current.py)
    NEMO_24_09 = "nemo-24.09"  # Megatron-Core through NeMo 1.0 (releases_nemo.py)
    NEMO_24_12 = "nemo-24.12"  # Megatron-Core through NeMo 1.0 (releases_nemo.py)
    NEMO_25_02 = "nemo-25.02"  # Megatron-Core through NeMo 2.2
    NEMO_25_04 = "nemo-25.04"  # Megatron-Core through NeMo 2.3 (releases_nemo.py)
    NEMO_25_07 = "nemo-25.07"  # Megatron-Core through NeMo 2.4 (releases_nemo.py)
    MEGATRON_BRIDGE_25_09 = "megatron-bridge-25.09"  # Megatron-Core through Megatron-Bridge 0.1.0rc3 (releases_bridge.py)
    MEGATRON_BRIDGE_25_11 = "megatron-bridge-25.11"  # Megatron-Bridge 0.2.0
    MEGATRON_BRIDGE_26_02 = "megatron-bridge-26.02"  # Megatron-Bridge 0.3.0
    MEGATRON_BRIDGE_26_02_01 = "megatron-bridge-26.02.01"  # Megatron-Bridge 0.3.1
    MEGATRON_BRIDGE_26_04 = "megatron-bridge-26.04"  # Megatron-Bridge 0.4.0
    MEGATRON_BRIDGE_26_04_01 = "megatron-bridge-26.04.01"  # Megatron-Core through Megatron-Bridge 0.4.2
    MEGATRON_BRIDGE_26_06 = "megatron-bridge-26.06"  # Megatron-Bridge 0.5.0
    MEGATRON_BRIDGE_26_06_01 = "megatron-bridge-26.06.01"  # Megatron-Bridge 0.5.1
    NEMO_AUTOMODEL_2025_10 = "nemo-automodel-2025-10"  # PyTorch FSDP2 through NeMo AutoModel
    NEMO_AUTOMODEL_2026_04 = "nemo-automodel-2026-04"  # PyTorch FSDP2 through NeMo AutoModel (releases_automodel.py)
    NEMO_AUTOMODEL_2026_07 = "nemo-automodel-2026-07"  # PyTorch FSDP2 through NeMo AutoModel (releases_automodel.py)
    TORCHTITAN_2024_04 = "torchtitan-2024-04"  # PyTorch FSDP2 through torchtitan (releases_torchtitan.py)
    TORCHTITAN_2024_12 = "torchtitan-2024-12"  # PyTorch FSDP2 + torchao through torchtitan (releases_torchtitan.py)
    TORCHTITAN_2025_06 = "torchtitan-2025-06"  # PyTorch FSDP2 + torchao through torchtitan (releases_torchtitan.py)
    TORCHTITAN_2026_08 = "torchtitan-2026-08"  # PyTorch FSDP2 through torchtitan
    DEEPSPEED_0_10 = "deepspeed-0.10"  # DeepSpeed ZeRO 1-3 engine, 0.8.2-0.10.3 (releases_deepspeed.py)
    DEEPSPEED_0_14 = "deepspeed-0.14"  # DeepSpeed ZeRO 1-3 engine, 0.14.0-0.16.4 (releases_deepspeed.py)
    MEGATRON_DEEPSPEED_2022 = "megatron-deepspeed-2022"  # BigScience's Megatron-DeepSpeed + DeepSpeed bf16 ZeRO-1
    META_4D_2024 = "meta-4d-2024"  # Meta's Llama 3 stack as its paper describes it (releases_meta.py)

    @classmethod
    def _missing_(cls, value: object) -> FrameworkName | None:
        """The preset of a release as validation rows name it in their ``software`` column (``pytorch-2.3``,
        ``deepspeed-0.15.1``, ``megatron-core-0.15.0``): the one whose release or stated range covers it."""
        if not isinstance(value, str):
            return None
        key = value.strip().lower()
        return next((name for name, rel in RELEASES.items() if rel.covers_release(key)), None)


# The preset a plan runs under when none is named: the newest Megatron-Core release capsim describes, as people who
# plan training today run it (issue 12); older releases stay one name away (--framework).
DEFAULT_FRAMEWORK = FrameworkName.MEGATRON_BRIDGE_26_04_01

# Names the presets had before they were dated (issue 11); the same presets, accepted by the Python API.
ALIASES = {"megatron-2021": FrameworkName.MEGATRON_2021, "megatron-2022": FrameworkName.MEGATRON_2022,
           "megatron-core": FrameworkName.MEGATRON_CORE, "fsdp": FrameworkName.FSDP}

# The first four presets are in releases_legacy.py, the others in the releases_*.py module each member names; each
# with its block-scaled formats (block_scaling.BLOCK_SCALED).
RELEASES: dict[FrameworkName, Release] = {k: with_block_scaled(r) for k, r in {
    FrameworkName.MEGATRON_2021: legacy.megatron_lm_2021(FrameworkName.MEGATRON_2021.value),
    FrameworkName.MEGATRON_2022: legacy.megatron_lm_2022(FrameworkName.MEGATRON_2022.value),
    FrameworkName.MEGATRON_2023: megatron_lm.megatron_lm_2023_01(FrameworkName.MEGATRON_2023.value),
    FrameworkName.MEGATRON_CORE: legacy.megatron_core_0_8(FrameworkName.MEGATRON_CORE.value),
    FrameworkName.MEGATRON_CORE_0_14: mcore.megatron_core_0_14(FrameworkName.MEGATRON_CORE_0_14.value),
    **{FrameworkName("megatron-core-" + t.removeprefix("core_v")):
       mcore.megatron_core_release("megatron-core-" + t.removeprefix("core_v"), t) for t in mcore.CORE_TAGS},
    FrameworkName.FSDP: legacy.fsdp_pytorch_2_3(FrameworkName.FSDP.value),
    FrameworkName.FSDP_2_0: fsdp1.fsdp_pytorch_2_0(FrameworkName.FSDP_2_0.value),
    FrameworkName.NEMO_24_07: current.nemo_24_07(FrameworkName.NEMO_24_07.value),
    FrameworkName.NEMO_25_02: current.nemo_25_02(FrameworkName.NEMO_25_02.value),
    **{n: nemo.nemo_release(n.value, n.value) for n in (
        FrameworkName.NEMO_24_09, FrameworkName.NEMO_24_12, FrameworkName.NEMO_25_04, FrameworkName.NEMO_25_07)},
    FrameworkName.MEGATRON_BRIDGE_26_04_01: current.megatron_bridge_26_04_01(FrameworkName.MEGATRON_BRIDGE_26_04_01.value),
    **{n: bridge.megatron_bridge(n.value, n.value) for n in (
        FrameworkName.MEGATRON_BRIDGE_25_09, FrameworkName.MEGATRON_BRIDGE_25_11, FrameworkName.MEGATRON_BRIDGE_26_02, FrameworkName.MEGATRON_BRIDGE_26_02_01,
        FrameworkName.MEGATRON_BRIDGE_26_04, FrameworkName.MEGATRON_BRIDGE_26_06, FrameworkName.MEGATRON_BRIDGE_26_06_01)},
    FrameworkName.NEMO_AUTOMODEL_2025_10: fsdp2.nemo_automodel_2025_10(FrameworkName.NEMO_AUTOMODEL_2025_10.value),
    FrameworkName.NEMO_AUTOMODEL_2026_04: automodel.nemo_automodel_2026_04(FrameworkName.NEMO_AUTOMODEL_2026_04.value),
    FrameworkName.NEMO_AUTOMODEL_2026_07: automodel.nemo_automodel_2026_07(FrameworkName.NEMO_AUTOMODEL_2026_07.value),
    FrameworkName.TORCHTITAN_2024_04: titan.torchtitan_2024_04(FrameworkName.TORCHTITAN_2024_04.value),
    FrameworkName.TORCHTITAN_2024_12: titan.torchtitan_2024_12(FrameworkName.TORCHTITAN_2024_12.value),
    FrameworkName.TORCHTITAN_2025_06: titan.torchtitan_2025_06(FrameworkName.TORCHTITAN_2025_06.value),
    FrameworkName.TORCHTITAN_2026_08: titan.torchtitan_2026_08(FrameworkName.TORCHTITAN_2026_08.value),
    FrameworkName.DEEPSPEED_0_10: deepspeed.deepspeed_0_10(FrameworkName.DEEPSPEED_0_10.value),
    FrameworkName.DEEPSPEED_0_14: deepspeed.deepspeed_0_14(FrameworkName.DEEPSPEED_0_14.value),
    FrameworkName.MEGATRON_DEEPSPEED_2022: deepspeed.megatron_deepspeed_2022(FrameworkName.MEGATRON_DEEPSPEED_2022.value),
    FrameworkName.META_4D_2024: meta.meta_4d_2024(FrameworkName.META_4D_2024.value),
}.items()}
FRAMEWORKS: dict[FrameworkName, Framework] = {k: r.framework for k, r in RELEASES.items()}


def get_release(name: FrameworkName | str) -> Release:
    """A preset by its name (or its name before issue 11)."""
    key = str(name).strip().lower()
    try:
        return RELEASES[ALIASES.get(key) or FrameworkName(key)]
    except ValueError:
        raise SpecError("framework", f"unknown framework preset {name!r}",
                        f"use one of {', '.join(f.value for f in FrameworkName)}") from None


def get_framework(framework: Framework | FrameworkName | str, flags: str = "") -> Framework:
    """A preset's Framework by name, with the run's ``flags`` applied, or a Framework given whole."""
    if isinstance(framework, Framework):
        return framework
    return get_release(framework).configure(flags)[0]


def release_for(framework: str, software: str) -> Release:
    """The preset of a row's ``framework`` and ``software`` columns: the release itself, or a preset whose stated
    release range covers it. A blank, unknown family or unknown release is an error naming the column."""
    family_name, software = framework.strip().lower(), software.strip().lower()
    families = ", ".join(f.value for f in FrameworkFamily)
    if not family_name:
        raise SpecError("framework", "blank", f"name the software the run used: one of {families}")
    try:
        family = FrameworkFamily(family_name)
    except ValueError:
        raise SpecError("framework", f"unknown framework {family_name!r}", f"capsim knows {families}") from None
    known = [r for r in RELEASES.values() if r.family is family]
    listed = "; ".join(r.software + (f" (covers {r.covers[0]} to {r.covers[1]})" if r.covers else "") for r in known)
    if not software:
        raise SpecError("software", f"blank for framework {family.value}", f"name the release: {listed}")
    match = next((r for r in known if r.covers_release(software)), None)
    if match is None:
        raise SpecError("software", f"unknown {family.value} release {software!r}", f"capsim knows {listed}")
    return match


__all__ = ["ALIASES", "DEFAULT_FRAMEWORK", "FRAMEWORKS", "RELEASES", "Framework", "FrameworkFamily", "FrameworkName", "Release",
           "get_framework", "get_release", "release_for"]
