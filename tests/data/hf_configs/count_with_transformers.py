"""Count the parameters of each fixture config with the transformers modeling code (meta device, no weights).

Not part of the suite (transformers is not a capsim dependency); its output, with the versions used, is
tests/data/transformers_param_counts.json. Run from the repository root, in an environment with transformers and
torch: python tests/data/hf_configs/count_with_transformers.py > tests/data/transformers_param_counts.json
(then restore its "_about" line). A config transformers cannot build is listed under "unbuildable" with the error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

HERE = Path(__file__).parent
# config keys that give the routed experts per MoE layer and those a token goes to (DBRX nests them in ffn_config)
EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
TOP_K = ("num_experts_per_tok", "moe_top_k")


def _first(config: object, keys: tuple[str, ...]) -> int | None:
    for source in (config, getattr(config, "ffn_config", None)):
        value = next((getattr(source, k) for k in keys if getattr(source, k, None)), None)
        if value:
            return value
    return None


def build(path: Path) -> tuple[torch.nn.Module, object]:
    cfg = json.loads(path.read_text())
    for key in ("_source", "auto_map", "quantization_config"):
        cfg.pop(key, None)
    config = AutoConfig.for_model(**cfg)
    if cfg["model_type"] in ("gemma3", "llama4"):
        config = config.text_config  # the text decoder, as capsim models it
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config), config


def count(model: torch.nn.Module) -> int:
    params = sum(p.numel() for p in model.parameters())
    # DeepSeek-V3's (and GLM-4.5's) routing bias is a buffer in transformers and a parameter in DeepSeek's
    # inference/model.py (Gate.bias).
    return params + sum(b.numel() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))


def active(model: torch.nn.Module, config: object) -> int:
    """count() less the routed-expert parameters a token does not touch: every parameter under a module whose class
    name ends in "Experts" and whose attribute name does not start with "shared" counts top_k / experts of itself."""
    routed = sum(p.numel() for name, module in model.named_modules()
                 if type(module).__name__.endswith("Experts") and not name.rsplit(".", 1)[-1].startswith("shared")
                 for p in module.parameters())
    if not routed:
        return count(model)
    experts, top_k = _first(config, EXPERTS), _first(config, TOP_K)
    return count(model) - routed + routed * top_k // experts


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(HERE.glob("*.json"))
    counts, actives, unbuildable = {}, {}, {}
    for path in paths:
        try:
            model, config = build(path)
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            unbuildable[path.stem] = f"{type(exc).__name__}: {exc}"
            continue
        counts[path.stem], actives[path.stem] = count(model), active(model, config)
    print(json.dumps({"counts": counts, "active": actives, "unbuildable": unbuildable}, indent=1))
