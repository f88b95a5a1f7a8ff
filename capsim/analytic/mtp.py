"""Multi-token prediction (DeepSeek-V3, arXiv:2412.19437 Sec. 2.2) as Megatron-Core runs it (``--mtp-num-layers N``,
``Framework.mtp_layers``): each MTP layer k takes the main model's (or the previous MTP layer's) hidden states h and
the embeddings of the tokens shifted by k, projects [norm(h); norm(emb)] (2h -> h) and runs one transformer layer,
then the shared final norm, LM head and loss.

What runs, read at ML@core_v0.14.0 (github.com/NVIDIA/Megatron-LM, 23e00ed0):
- megatron/core/transformer/multi_token_prediction.py L336-345: every MTP layer is built on the last pipeline stage
  only (get_mtp_num_layers_to_build), in its last virtual chunk (pipeline_parallel_layer_layout.py L117-131: 'm'
  only in the last rank's last chunk, together with the loss);
- L438-478: per layer enorm, hnorm (RMSNorm/LayerNorm of width h), eh_proj (a column-parallel linear 2h -> h, no bias),
  one transformer layer of the decoder's spec, final_layernorm; L502-505: the embedding run again on the shifted ids;
- megatron/core/models/gpt/gpt_model.py L141-142: the last stage builds the word embedding too (``pre_process or
  mtp_process``), whose gradient finalize_model_grads all-reduces with the first stage's
  (megatron/core/distributed/finalize_model_grads.py L146: ``share_embeddings_and_output_weights or mtp_num_layers``);
- gpt_model.py L468-500: each MTP layer's hidden states go through the shared output layer and a full loss;
- L625-640: with full recomputation MTP layers are checkpointed under method 'uniform' (recompute_num_layers must
  be 1) and not at all under 'block' ("not supported for MTP yet. Skipping recompute");
- megatron/training/training.py L259-263, L383-394: Megatron's FLOPs count the MTP layers as decoder layers of the
  last layer's kind, plus 3 x 2 x mtp (3h + 2h^2) for the norms and the projection, plus (mtp + 1) LM heads.

Hugging Face's DeepseekV3 model drops the MTP weights (``num_nextn_predict_layers`` is read and not built:
transformers src/transformers/models/deepseek_v3/modular_deepseek_v3.py, DeepseekV3Model
``_keys_to_ignore_on_load_unexpected`` matching ``model.layers.61.*``, the checkpoint's MTP layer), so
capsim's parameter counts of a catalog model leave MTP out (capsim.specs.hf says how many it left out); training
with ``--mtp-num-layers`` prices them here.
"""

from __future__ import annotations

import numpy as np

from capsim._types import Num
from capsim.analytic.flops import attention_weights, mlp_weights
from capsim.analytic.fp8 import QUANTIZED, SPLIT
from capsim.analytic.params import layer_params_by_kind, norm_params
from capsim.perf import Perf
from capsim.specs.model import ModelSpec
from capsim.specs.precision import DType


def extra_params(model: ModelSpec) -> int:
    """Parameters of one MTP layer besides its transformer layer: enorm, hnorm and final_layernorm (width h) and
    eh_proj (2h x h, no bias) (multi_token_prediction.py L438-478)."""
    return 3 * norm_params(model) + 2 * model.hidden * model.hidden


def layer_params(model: ModelSpec) -> tuple[int, int]:
    """(parameters every token uses, routed-expert parameters) of one MTP layer: a transformer layer of the decoder's
    last layer's kind (an MoE layer in an MoE model; ``layer_params_by_kind``) plus ``extra_params``."""
    common, routed = layer_params_by_kind(model)["moe"]
    return common + extra_params(model), routed


def _layer_matmul_params(model: ModelSpec) -> float:
    """Weights one token multiplies through in one MTP layer: attention, the MLP (active experts, shared experts and
    router of an MoE layer) and eh_proj (as ``capsim.analytic.flops.matmul_params`` counts a decoder layer)."""
    return float(attention_weights(model) + mlp_weights(model, model.is_moe) + 2 * model.hidden * model.hidden)


def flops_per_token(model: ModelSpec, seq_len: Num, replayed: Num = 0.0) -> Num:
    """Training FLOPs per token of one MTP layer: forward + backward of its matmuls (6N, the full attention square
    as Megatron counts it) and of its LM head (6 h V); ``replayed`` (0 or 1) adds its forward once more (full
    recomputation, method uniform) (training.py L259-263, L383-394)."""
    attn = 2.0 * model.heads * (model.head_dim + model.v_dim) * np.asarray(seq_len, float)
    passes = 3.0 + np.asarray(replayed, float)
    return passes * (2.0 * _layer_matmul_params(model) + attn) + 6.0 * model.vocab * model.hidden


def proj_gemm_s(perf: Perf, model: ModelSpec, tokens: Num, tp: Num, fmt: DType) -> Num:
    """Seconds of eh_proj's forward and backward GEMMs on one GPU for one micro-batch: [tokens, 2h] x [2h, h/tp]
    (column-parallel), its data and weight gradients of the same size, which a quantized recipe runs with split
    accumulation as every other weight GEMM's (capsim.analytic.fp8.SPLIT_ACCUMULATION_ROLES)."""
    h, n = model.hidden, model.hidden / np.asarray(tp, float)
    backward = perf.gemm_s(tokens, n, 2 * h, fmt, accumulation=SPLIT if fmt in QUANTIZED else "")
    return perf.gemm_s(tokens, n, 2 * h, fmt) + 2.0 * backward


def embedding_copy_params(model: ModelSpec, pp: Num) -> Num:
    """Word-embedding parameters the last stage builds for MTP (gpt_model.py L141-142) where it has none: with
    pp > 1 and untied embeddings (a tied model's last stage already keeps a copy for its LM head)."""
    own = 0 if model.tied_embeddings else model.vocab * model.hidden
    return np.where(np.asarray(pp) > 1, own, 0)


__all__ = ["embedding_copy_params", "extra_params", "flops_per_token", "layer_params", "proj_gemm_s"]
