"""Megatron-FSDP: Megatron-Core's own fully sharded data parallelism, as flags of the Megatron-Core releases that have
it. It is priced on the one ZeRO/FSDP path (``sharded``, ``stages``, ``memory``); what it does differently from
PyTorch FSDP2 is the Framework fields its switch sets, each cited below.

Citations: ``ML@<tag>`` is github.com/NVIDIA/Megatron-LM at that tag; ``core/`` is megatron/core there and
``fsdp.py`` is megatron/core/distributed/fsdp/src/megatron_fsdp/megatron_fsdp.py, ``buffer.py`` its
param_and_grad_buffer.py, at core_v0.14.0 (23e00ed0, 2025-10-08).

- It arrived as ``--use-custom-fsdp`` in core 0.12 (ML merge d165a85, 2025-02-26, "MCore Customized FSDP";
  ML@core_v0.12.0 training/arguments.py L2133) and was renamed ``--use-megatron-fsdp`` in core 0.14 (ML af28b5a,
  2025-08-21; ML@core_v0.14.0 training/arguments.py L2425, ``use_custom_fsdp`` kept as its deprecated alias, L619-623).
- ``--data-parallel-sharding-strategy`` (L2428, default ``no_shard``): ``optim`` shards the optimizer state,
  ``optim_grads`` also the gradients, ``optim_grads_params`` also the parameters: ZeRO-1/2/3.
- Units: each TransformerLayer is an FSDP unit (core/distributed/fsdp/mcore_fsdp_adapter.py L91-97, under
  optim_grads_params) whose parameters are all-gathered before its forward and backward
  (fsdp.py L595-616, L715-722), with the next unit's buckets prefetched in pass order until the prefetched size
  reaches ``suggested_communication_unit_size // 2`` elements (buffer.py L3188-3215; fsdp.py L356-380: default 1e9
  elements): at least one unit ahead, and at most two units resident with ``fsdp_double_buffer`` (buffer.py
  L3176-3185): capsim's one-unit-ahead prefetch (``zero3_prefetch``). The recomputed forward inside a unit's
  backward prefetches nothing (fsdp.py L596-598).
- Gradients: with ``optim_grads``/``optim_grads_params`` each unit's gradients are reduce-scattered right after its
  backward, every micro-batch (fsdp.py L573-586 ``grad_reduce_every_bprop``): no deferred sync. Under hybrid sharding
  the outer (replica) reduction runs only on the last micro-batch (L584-586 ``outer_fsdp_group_grad_reduce ... and
  (is_last_microbatch or self.model_auto_sync)``): ``replica_reduce_every_micro_batch`` False.
- Hybrid sharding: ``--num-distributed-optimizer-instances`` (L2447) replicas of the sharded state, sharded over
  dp x cp / instances ranks each (mcore_fsdp_adapter.py L155-162: enable_hsdp, the inter-instance group as the
  outer group; the validation data's ``fsdp`` column, capsim's ``shard``).
- Its buffers hold the sharded state the optimizer steps on, so capsim prices its sharding as the ZeRO stage, not
  as the distributed optimizer (whose flag Megatron-Bridge's recipes leave on beside it).
"""

from __future__ import annotations

from capsim.analytic.training.release import Flag, Reshard

_V14 = "ML@core_v0.14.0 training/arguments.py"
_V12 = "ML@core_v0.12.0 (d580efc) training/arguments.py"
STRATEGIES = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}

# What the switch sets: Megatron-FSDP's behaviour (module docstring) over the release's distributed optimizer.
_SETS = {"zero3_prefetch": True, "overlap_grad_reduce": True, "reshard_after_forward": Reshard.ALWAYS,
         "defer_grad_sync": False, "replica_reduce_every_micro_batch": False, "layout.distributed_optimizer": False}
_WHY = ("; Megatron-FSDP per-TransformerLayer units, all-gathered one unit ahead (core_v0.14.0 megatron_fsdp.py "
        "L595-616, param_and_grad_buffer.py L3188-3215), gradients reduce-scattered after every backward "
        "(megatron_fsdp.py L573-586), hybrid replicas reduced on the last micro-batch only (L584-586); its "
        "sharding replaces the distributed optimizer's (capsim.analytic.training.megatron_fsdp)")

_OFFLOAD = ("ML@core_v0.14.0 core/transformer/transformer_config.py cpu_offloading / cpu_offloading_num_layers "
            "(L808-823: fewer layers than the model's, no pipeline parallelism, no recomputation), applied per layer by "
            "Transformer Engine's get_cpu_offload_context (core/transformer/transformer_block.py L287-295); "
            "Megatron-Bridge's perf scripts set cpu_offloading True, cpu_offloading_weights False "
            "(MB@v0.1.0rc3 scripts/performance/utils/helpers.py L131-135, MB@v0.2.0 L170-173)")

# flag -> (field, values, source, first core minor that has it, further fields it sets)
FLAGS: dict[str, tuple[str, dict[str, object], str, int, dict[str, object]]] = {
    "--use-custom-fsdp": ("zero", {"": True}, f"{_V12} L2133 (ML merge d165a85, 2025-02-26)" + _WHY, 12, _SETS),
    "--use-megatron-fsdp": ("zero", {"": True}, f"{_V14} L2425 (renamed from --use-custom-fsdp in ML af28b5a, "
                            "2025-08-21)" + _WHY, 14, _SETS),
    "--data-parallel-sharding-strategy": ("layout.zero_stage", dict(STRATEGIES),
                                          f"{_V14} L2428 (ML@core_v0.12.0 L2136): no_shard, optim, optim_grads, "
                                          "optim_grads_params = ZeRO-0/1/2/3", 12, {}),
    # CPU activation offloading, which Megatron-Bridge's Megatron-FSDP perf configs turn on (a TransformerConfig
    # setting, not a training/arguments.py flag; named here by its config field)
    "--cpu-offloading-num-layers": ("offload_layers", {str(n): n for n in range(1, 257)}, _OFFLOAD, 14, {}),
}
ARRIVED = {"--use-custom-fsdp": "Megatron-Core 0.12 (core_v0.12.0, 2025-05-06)",
           "--use-megatron-fsdp": "Megatron-Core 0.14 (core_v0.14.0, 2025-10-08; --use-custom-fsdp from 0.12)",
           "--data-parallel-sharding-strategy": "Megatron-Core 0.12 (core_v0.12.0, 2025-05-06)",
           "--cpu-offloading-num-layers": "Megatron-Core 0.14 as capsim reads it (core_v0.14.0)"}


def fsdp_flags(core_minor: int) -> dict[str, Flag]:
    """The Megatron-FSDP flags of Megatron-Core 0.``core_minor`` (none before 0.12)."""
    return {name: Flag(field, values, source, also)
            for name, (field, values, source, since, also) in FLAGS.items() if since <= core_minor}


def arrived(flag: str) -> str | None:
    """Since which Megatron-Core release a Megatron-FSDP flag exists (None: not one of them)."""
    return ARRIVED.get(flag)


__all__ = ["ARRIVED", "FLAGS", "STRATEGIES", "arrived", "fsdp_flags"]
