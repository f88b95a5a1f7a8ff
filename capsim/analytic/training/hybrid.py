"""Which releases' code has hybrid sharding (HSDP): a ZeRO/FSDP sharding group smaller than dp x cp, the state
sharded inside each group and replicated over the dp x cp / group copies. A layout with such a group is priced only
under these releases (``step_time`` refuses it under any other, the one place every entry point passes through).

Citations: ``TT@`` github.com/pytorch/torchtitan, ``AM@`` NVIDIA-NeMo/Automodel, ``ML@`` NVIDIA/Megatron-LM,
``NeMo@`` NVIDIA/NeMo, ``MB@`` NVIDIA-NeMo/Megatron-Bridge, each at the commit or tag named.

- torchtitan: ``data_parallel_replicate_degree`` arrived after 1ea476e (torchtitan-2024-04 has none).
- Megatron-Core: ``--num-distributed-optimizer-instances`` (ML bb84eb93, 2024-11-30, "MCore Partial DistOpt
  Feature"; first in core_v0.10.0, absent at core_v0.9.0): that many copies of the distributed optimizer's (or, from
  core 0.14, Megatron-FSDP's) shards, each over dp x cp / instances ranks. NeMo reaches it through its NeMo 2
  strategy from v2.4.0 only (nemo/lightning/_strategy_lib.py; v2.2.0rc3 and v2.3.0 pass it only on their NeMo 1.0
  path, which nemo-25.02/25.04's llm recipes do not use), Megatron-Bridge from v0.1.0rc3 (cfg.ddp).
- PyTorch FSDP1: ``ShardingStrategy.HYBRID_SHARD`` (torch/distributed/fsdp/api.py, there since PyTorch 2.0).
- Not: DeepSpeed (capsim does not read its MiCS / hpZ partitions, which are not ZeRO over a smaller group alike),
  Megatron-LM before Megatron-Core, Megatron-Core before 0.10 and the NeMo releases on it.
"""

from __future__ import annotations

import numpy as np

from capsim.errors import SpecError

_TT_HSDP = ("torchtitan {}: data_parallel_replicate_degree > 1 with data_parallel_shard_degree > 1 'is HSDP (Hybrid "
            "Sharded Data Parallelism)'")
_AM_HSDP = "NeMo AutoModel {}: FSDP2's dp_replicate_size, the HSDP replication group (its shards over the rest of dp)"
_MC = "ML@{} training/arguments.py L{} --num-distributed-optimizer-instances (dp x cp / instances ranks per shard group)"
_MB = ("MB@{} src/megatron/bridge/training/initialize.py L{} cfg.ddp.num_distributed_optimizer_instances to "
       "initialize_model_parallel (Megatron-Core's --num-distributed-optimizer-instances)")

# The FSDP2 releases whose hybrid sharding a layout search tries on its own (capsim.plan.train_layouts).
FSDP2_HYBRID = {
    "torchtitan-2024-12": _TT_HSDP.format("TT@9dec370 torchtitan/config_manager.py L243-253"),
    "torchtitan-2025-06": _TT_HSDP.format("TT@e7c0cae torchtitan/config_manager.py L256-262"),
    "torchtitan-2026-08": _TT_HSDP.format("TT@b5bcd76 torchtitan/config/configs.py L122-128"),
    "nemo-automodel-2025-10": _AM_HSDP.format("AM@8d9bfb9 nemo_automodel/components/distributed/fsdp2.py L52, L79"),
    "nemo-automodel-2026-04": _AM_HSDP.format("AM@dccd977aa nemo_automodel/components/distributed/device_mesh.py "
                                              "L49, L65"),
    "nemo-automodel-2026-07": _AM_HSDP.format("AM@79378e626 nemo_automodel/components/distributed/mesh.py L74"),
}

# Every release whose code has hybrid sharding -> where; a sharding group smaller than dp x cp prices only under these.
HYBRID_SHARDING: dict[str, str] = {
    **FSDP2_HYBRID,
    "fsdp-pytorch-2.3": "PyTorch v2.3.0 torch/distributed/fsdp/api.py ShardingStrategy.HYBRID_SHARD (full shard "
                        "within a group, replicated across groups; _HYBRID_SHARD_ZERO2 for ZeRO-2)",
    "megatron-core-0.10.0": _MC.format("core_v0.10.0", 1748),
    "megatron-core-0.11.0": _MC.format("core_v0.11.0", 1841),
    "megatron-core-0.12.0": _MC.format("core_v0.12.0", 2148),
    "megatron-core-0.12.1": _MC.format("core_v0.12.1", 2148),
    "megatron-core-0.13.0": _MC.format("core_v0.13.0", 2376),
    "megatron-core-0.14.0": _MC.format("core_v0.14.0", 2447) + " (Megatron-FSDP: mcore_fsdp_adapter.py L155-162)",
    "nemo-25.07": "NeMo@v2.4.0 nemo/lightning/_strategy_lib.py L104 parallel_config.num_distributed_optimizer_instances"
                  " to initialize_model_parallel (Megatron-Core's --num-distributed-optimizer-instances)",
    "megatron-bridge-25.09": _MB.format("v0.1.0rc3", 104),
    "megatron-bridge-25.11": _MB.format("v0.2.0", 115),
    "megatron-bridge-26.02": _MB.format("v0.3.0", 125),
    "megatron-bridge-26.02.01": _MB.format("v0.3.1", 125),
    "megatron-bridge-26.04": _MB.format("v0.4.0", 128),
    "megatron-bridge-26.04.01": _MB.format("v0.4.2", 128),
    "megatron-bridge-26.06": _MB.format("v0.5.0", 133),
    "megatron-bridge-26.06.01": _MB.format("v0.5.1", 133),
}


def has_hybrid_sharding(release: str) -> bool:
    """Whether ``release``'s code has hybrid sharding (``HYBRID_SHARDING``)."""
    return release in HYBRID_SHARDING


def check_hybrid(release: str, dp: object, cp: object, shard: object) -> None:
    """Refuse (SpecError on field ``shard``, which the CLI names --fsdp-group) a sharding group smaller than dp x cp
    under a release whose code has no hybrid sharding; ``shard`` 0 is the whole dp x cp."""
    dpcp, group = np.asarray(dp) * np.asarray(cp), np.asarray(shard)
    hybrid = (group > 0) & (group < dpcp)
    if has_hybrid_sharding(release) or not hybrid.any():
        return
    first = int(np.broadcast_to(group, hybrid.shape)[hybrid][0]) if hybrid.ndim else int(group)
    whole = int(np.broadcast_to(dpcp, hybrid.shape)[hybrid][0]) if hybrid.ndim else int(dpcp)
    raise SpecError("shard", f"{release} has no hybrid sharding: a sharding group of {first} below dp x cp = {whole} "
                             "cannot run under it",
                    "drop --fsdp-group (the plan's shard_group, a layout's shard: shard over all of dp x cp), or "
                    f"use a release with hybrid sharding ({_WITH})")


_WITH = ("torchtitan-2024-12 onward, nemo-automodel-*, fsdp-pytorch-2.3, megatron-core-0.10.0 onward, nemo-25.07, "
         "megatron-bridge-*")


__all__ = ["FSDP2_HYBRID", "HYBRID_SHARDING", "check_hybrid", "has_hybrid_sharding"]
