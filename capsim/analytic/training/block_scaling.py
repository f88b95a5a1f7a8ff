"""Which block-scaled formats (MXFP8, NVFP4) each framework release trains in: ``Framework.block_scaled`` by
release, with where the release's code offers them. A format a release does not list is refused by ``step_time``
and every face with it ("<release> has no MXFP8 training"); the accelerator's own limit (Blackwell's block-scaled
tensor cores) is ``capsim.specs.precision.require_block_scaling``.

Read at each release's code (``git show <tag>:<path>``): Megatron-LM (ML), Megatron-Bridge (MB), NeMo, NeMo
AutoModel (AM), torchtitan (TT), Transformer Engine (TE). Transformer Engine's recipes: MXFP8BlockScaling from TE
v2.0 (2025-02-12, transformer_engine/common/recipe/__init__.py L165), NVFP4BlockScaling from TE v2.8 (2025-10-01,
L381); both need compute capability 10.0+ (TE@v2.8 transformer_engine/pytorch/fp8.py L48-61).
"""

from __future__ import annotations

from dataclasses import replace

from capsim.analytic.training.release import Release
from capsim.specs.precision import DType

MX, FP4 = DType.MXFP8, DType.NVFP4

_NO_FP8 = "no FP8 training at all in this code, so no block-scaled format (see fp8_training)"
_TE1 = ("TE 1.x, the Transformer Engine of this release's date, has no block-scaled recipe (MXFP8BlockScaling came "
        "with TE v2.0, 2025-02-12)")
_ML_MX = "ML@{} megatron/training/arguments.py L{}: --fp8-recipe choices include 'mxfp8' (no --fp4-format: NVFP4 " \
         "arrived with core_v0.15.0 arguments.py L1353-1358 --fp4-format, --fp4-recipe nvfp4)"
_MB_BOTH = ("MB@{} src/megatron/bridge/training/mixed_precision.py L{} bf16_with_mxfp8_mixed (fp8_recipe 'mxfp8'), "
            "L{} bf16_with_nvfp4_mixed (fp4 'e2m1', fp4_recipe nvfp4)")
_NEMO2_MX = ("NeMo@{} nemo/collections/llm/recipes/precision/mixed_precision.py L92-100 bf16_with_mxfp8_mixed "
             "(fp8_recipe 'mxfp8'; nemo/lightning/pytorch/plugins/mixed_precision.py L108: 'mxfp8' for Blackwell "
             "only); no FP4 recipe in this NeMo")

# release name -> (the block-scaled formats it trains in, where its code says so)
BLOCK_SCALED: dict[str, tuple[tuple[DType, ...], str]] = {
    "megatron-lm-2021": ((), _NO_FP8),
    "megatron-lm-2022": ((), _NO_FP8),
    "megatron-deepspeed-2022": ((), _NO_FP8),
    "megatron-lm-2023.01.11": ((), "FP8 not offered by this preset (fp8_training; releases_megatron_lm._NO_FP8); "
                                   + _TE1),
    "megatron-core-0.8.0": ((), "ML@core_v0.8.0 has no --fp8-recipe (its choice 'mxfp8' arrived with core_v0.12.0 "
                                "training/arguments.py L1057-1058); " + _TE1),
    "megatron-core-0.9.0": ((), "ML@core_v0.9.0: no --fp8-recipe and no 'mxfp8' anywhere under megatron/ (git grep); "
                                "it arrived with core_v0.12.0 arguments.py L1057-1058"),
    "megatron-core-0.10.0": ((), "ML@core_v0.10.0: no --fp8-recipe and no 'mxfp8' anywhere under megatron/ (git "
                                 "grep); it arrived with core_v0.12.0 arguments.py L1057-1058"),
    "megatron-core-0.11.0": ((), "ML@core_v0.11.0: no --fp8-recipe and no 'mxfp8' anywhere under megatron/ (git "
                                 "grep); it arrived with core_v0.12.0 arguments.py L1057-1058"),
    "megatron-core-0.12.0": ((MX,), _ML_MX.format("core_v0.12.0", "1057-1058")),
    "megatron-core-0.12.1": ((MX,), _ML_MX.format("core_v0.12.1", "1057-1058")),
    "megatron-core-0.13.0": ((MX,), _ML_MX.format("core_v0.13.0", "1184-1185")),
    # The preset's code is core_v0.14.0; the 0.15.0-0.16.1 it covers add --fp4-format, which it does not price.
    "megatron-core-0.14.0": ((MX,), _ML_MX.format("core_v0.14.0", "1224-1225")),
    "fsdp-pytorch-2.3": ((), "FSDP1 adds no FP8; a run in FP8 brings Transformer Engine, and " + _TE1),
    "deepspeed-0.14": ((), "DeepSpeed adds no FP8; a run in FP8 brings Transformer Engine, and " + _TE1),
    "deepspeed-0.10": ((), "DeepSpeed adds no FP8; a run in FP8 brings Transformer Engine, and " + _TE1),
    "fsdp-pytorch-2.0": ((), "FSDP1 adds no FP8; a run in FP8 brings Transformer Engine, and " + _TE1),
    "meta-4d-2024": ((), "no FP8 training in the Llama 3 paper's stack (fp8_training: Sec. 3.3.2 reports BF16 "
                         "training)"),
    "nemo-24.07": ((), "NeMo@c277b9a6 (NeMo 1.0, TE 1.8): no 'mxfp8' or 'nvfp4' in any .py or .yaml (git grep); "
                       + _TE1),
    "nemo-24.09": ((), "NeMo@24.09-alpha.rc0: no 'mxfp8' or 'nvfp4' in any .py or .yaml (git grep); " + _TE1),
    "nemo-24.12": ((), "NeMo@v2.1.0: no 'mxfp8' or 'nvfp4' in any .py or .yaml (git grep)"),
    "nemo-25.02": ((), "NeMo@v2.2.0rc3: no MXFP8 recipe (only nemo/core/optim/distributed_adam.py L266-268 refusing "
                       "MXFP8 parameters) and no fp8_recipe in nemo/lightning/pytorch/plugins/mixed_precision.py; "
                       "its core (core_r0.11.0) has no --fp8-recipe"),
    "nemo-25.04": ((MX,), _NEMO2_MX.format("v2.3.0")),
    "nemo-25.07": ((MX,), _NEMO2_MX.format("v2.4.0")),
    "megatron-bridge-25.09": ((MX,), "MB@v0.1.0rc3 src/megatron/bridge/training/mixed_precision.py L221-229 "
                                     "bf16_with_mxfp8_mixed (fp8_recipe 'mxfp8'); no FP4 config at this tag"),
    "megatron-bridge-25.11": ((MX, FP4), _MB_BOTH.format("v0.2.0", "242-250", "392-400")),
    "megatron-bridge-26.02": ((MX, FP4), _MB_BOTH.format("v0.3.0", "242-250", "392-400")),
    "megatron-bridge-26.02.01": ((MX, FP4), _MB_BOTH.format("v0.3.1", "242-250", "392-400")),
    "megatron-bridge-26.04": ((MX, FP4), _MB_BOTH.format("v0.4.0", "247-255", "397-405")),
    "megatron-bridge-26.04.01": ((MX, FP4), _MB_BOTH.format("v0.4.2", "261-269", "411-419")),
    "megatron-bridge-26.06": ((MX, FP4), _MB_BOTH.format("v0.5.0", "255-263", "405-413")),
    "megatron-bridge-26.06.01": ((MX, FP4), _MB_BOTH.format("v0.5.1", "255-263", "405-413")),
    "nemo-automodel-2025-10": ((), "AM@8d9bfb9: no 'mxfp8' or 'nvfp4' in any .py (git grep)"),
    "nemo-automodel-2026-04": ((), "AM@dccd977aa: no 'mxfp8' or 'nvfp4' in any .py (git grep)"),
    "nemo-automodel-2026-07": ((MX,), "AM@79378e626 nemo_automodel/components/models/common/utils.py L113, L131-140: "
                                      "TEFp8Config recipe 'mxfp8' builds TE's MXFP8BlockScaling; no 'nvfp4' in any "
                                      ".py (git grep)"),
    "torchtitan-2024-04": ((), "TT@1ea476e: FP8 only as torchao Float8Linear (--training.fp8_linear); no MX or "
                               "NVFP4 converter"),
    "torchtitan-2024-12": ((), "TT@9dec370: FP8 only as torchao Float8Linear; no MX or NVFP4 converter"),
    "torchtitan-2025-06": ((MX,), "TT@e7c0cae torchtitan/components/quantization/mx.py L26-52: MXConverter turns the "
                                  "linears into torchao MXLinear ('mxfp8', asserting SM100); no NVFP4 converter"),
    "torchtitan-2026-08": ((MX, FP4), "TT@b5bcd76 torchtitan/components/quantization/mx.py L50 "
                                      "MXFP8LinearConverter; nvfp4.py L268-291 NVFP4LinearConverter (torchao's "
                                      "nvfp4_training prototype, sm_100+)"),
}


def with_block_scaled(release: Release) -> Release:
    """``release`` with its block-scaled formats and their citation (``BLOCK_SCALED``)."""
    formats, cite = BLOCK_SCALED[release.name]
    return replace(release, framework=release.framework.with_(block_scaled=formats),
                   cite={**release.cite, "block_scaled": cite})


__all__ = ["BLOCK_SCALED", "with_block_scaled"]
