"""CPU activation offloading (Megatron-Core's ``cpu_offloading_num_layers``, run by Transformer Engine's
``get_cpu_offload_context``): the activations a layer saves for its backward are copied to host memory during the
forward and back before its backward, on a side stream, while the next layer computes.

Megatron-Core offloads fewer layers than the model has and refuses pipeline parallelism and recomputation with it
(core/transformer/transformer_config.py L808-823, NVIDIA/Megatron-LM@core_v0.14.0). Memory: the offloaded layers'
activations leave the GPU but for one layer's in flight (TE's double-buffered group handler,
transformer_engine/pytorch/cpu_offload.py AsyncDoubleBufferGroupOffloadHandler: one group copying while the next
computes). Time: each offloaded layer's copy hides behind the next layer's forward (the reload behind the previous
layer's backward) on the GPU's host link (``Accelerator.host_link_bw_bytes_per_s``); the rest is exposed.
"""

from __future__ import annotations

import numpy as np

from capsim.analytic.layouts import Layouts
from capsim.analytic.training.release import Framework
from capsim.specs.hardware import Accelerator


def offloaded_layers(lay: Layouts, fw: Framework) -> np.ndarray:
    """Layers whose activations go to the host, per layout (the release's count; at most all but one layer)."""
    return np.clip(fw.offload_layers, 0, np.maximum(lay.first_stage_layers - 1, 0)).astype(float)


def offload_s(lay: Layouts, fw: Framework, acc: Accelerator, layer_bytes: np.ndarray, layer_fwd_s: np.ndarray,
              layer_bwd_s: np.ndarray) -> np.ndarray:
    """Exposed offload and reload seconds of one step: per micro-batch and offloaded layer, the copy of its
    ``layer_bytes`` of activations less the layer compute it overlaps (forward out, backward in)."""
    if not fw.offload_layers or not acc.host_link_bw_bytes_per_s:
        return np.zeros(len(lay))
    copy = np.asarray(layer_bytes, float) / acc.host_link_bw_bytes_per_s
    per_micro_batch = offloaded_layers(lay, fw) * (np.maximum(copy - layer_fwd_s, 0.0)
                                                   + np.maximum(copy - layer_bwd_s, 0.0))
    return lay.micro_batches * per_micro_batch


def checks(lay: Layouts, fw: Framework, acc: Accelerator, layers: int) -> list[tuple[object, str]]:
    """What Megatron-Core refuses with CPU offloading (transformer_config.py L808-823), and an accelerator whose
    host link capsim does not know."""
    if not fw.offload_layers:
        return []
    why = "CPU activation offloading "
    return [(lay.pp > 1, why + "with pipeline parallelism (Megatron-Core refuses it)"),
            (lay.recompute > 0, why + "with recomputation (Megatron-Core refuses it)"),
            (fw.offload_layers >= layers, why + f"of {fw.offload_layers} of the model's {layers} layers"),
            (acc.host_link_bw_bytes_per_s is None, why + f"on {acc.name}, whose host link the catalog does not "
                                                         "state (host_link_bw_bytes_per_s)")]


__all__ = ["checks", "offload_s", "offloaded_layers"]
