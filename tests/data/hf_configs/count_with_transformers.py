"""Count the parameters of each fixture config with the transformers modeling code (meta device, no weights).

Not part of the suite (transformers is not a capsim dependency); its output, with the versions used, is
tests/data/transformers_param_counts.json. Run from the repository root, in an environment with transformers and
torch: python tests/data/hf_configs/count_with_transformers.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

HERE = Path(__file__).parent


def count(path: Path) -> int:
    cfg = json.loads(path.read_text())
    for key in ("_source", "auto_map", "quantization_config"):
        cfg.pop(key, None)
    config = AutoConfig.for_model(**cfg)
    if cfg["model_type"] == "gemma3":
        config = config.text_config  # the text decoder, as capsim models it
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    # DeepSeek-V3's routing bias is a buffer in transformers and a parameter in DeepSeek's inference/model.py.
    return params + sum(b.numel() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))


if __name__ == "__main__":
    print(json.dumps({p.stem: count(p) for p in sorted(HERE.glob("*.json"))}, indent=1))
