"""``capsim catalog models|accelerators|prices|engines``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from capsim.analytic.memory import kv_cache_bytes_per_token
from capsim.analytic.params import param_counts
from capsim.cli.common import JsonOpt, console, emit_json, table
from capsim.specs.catalog import accelerators, models, prices
from capsim.specs.model import ModelSpec


class Kind(StrEnum):
    MODELS = "models"
    ACCELERATORS = "accelerators"
    PRICES = "prices"
    ENGINES = "engines"


def _attention(m: ModelSpec) -> str:
    """How a model attends, in a few characters: kv heads (or MLA's latent) and any sliding window."""
    kind = f"mla{m.kv_lora_rank}" if m.is_mla else ("mha" if m.kv_heads == m.heads else f"gqa{m.kv_heads}")
    if m.sliding_window:  # window, then sliding:global layers where both exist
        kind += f" w{m.sliding_window}" + (f" {m.global_every - 1}:1" if m.global_every else "")
    return kind


def catalog(kind: Annotated[Kind, typer.Argument(help="Which catalog to list.")], as_json: JsonOpt = False) -> None:
    """List the shipped catalogs of models, accelerators, prices or engine profiles."""
    if kind is Kind.MODELS:
        rows = []
        for m in models().values():
            pc = param_counts(m)
            rows.append({"name": m.name, "params_total": pc.total, "params_active": pc.active,
                         "params_embedding": pc.embedding, "arch": m.arch.value, "hidden": m.hidden,
                         "layers": m.layers, "heads": m.heads, "kv_heads": m.kv_heads, "ffn_hidden": m.ffn_hidden,
                         "vocab": m.vocab, "mlp": m.mlp.value, "experts": m.experts, "top_k": m.top_k,
                         "attention": _attention(m), "kv_bytes_per_token_bf16": float(kv_cache_bytes_per_token(m, 2)),
                         "aliases": list(m.aliases), "source": m.source})
        if as_json:
            return emit_json(rows)
        console.print(table("Models", ["name", "params", "active", "arch", "hidden", "layers", "heads", "attention",
                                       "mlp"],
                            [[r["name"], f"{r['params_total'] / 1e9:.3f}B", f"{r['params_active'] / 1e9:.3f}B",
                              r["arch"], r["hidden"], r["layers"], r["heads"], r["attention"], r["mlp"]] for r in rows]))
    elif kind is Kind.ACCELERATORS:
        accs = [a.to_dict() for a in accelerators().values()]
        if as_json:
            return emit_json(accs)
        console.print(table("Accelerators (dense peaks)", ["name", "bf16 TFLOP/s", "fp8 TFLOP/s", "memory GiB",
                                                            "HBM TB/s", "link GB/s/dir", "per node", "$/h"],
                            [[a["name"], (a["peaks"]["bf16"] or 0) / 1e12, (a["peaks"]["fp8"] or 0) / 1e12,
                              a["memory_bytes"] / 2**30, a["memory_bw_bytes_per_s"] / 1e12,
                              (a["intra_node_bw_bytes_per_s"] or 0) / 1e9, a["gpus_per_node"],
                              a["price_usd_per_hour"]] for a in accs]))
    elif kind is Kind.ENGINES:
        from capsim.specs.engine import engines

        profs = [e.to_dict() for e in engines().values()]
        if as_json:
            return emit_json(profs)
        console.print(table("Engine profiles (capsim/specs/catalog/engines.yaml; every value cited there)",
                            ["name", "engine", "release", "covers", "device", "scheduler", "max seqs", "max tokens"],
                            [[e["name"], e["engine"], e["release"],
                              f"{e['covers'][0]} to {e['covers'][1] or 'later'}", e["device_type"], e["scheduler"],
                              e["max_num_seqs"], e["max_num_batched_tokens"]] for e in profs]))
    else:
        rows = prices()
        if as_json:
            return emit_json(rows)
        console.print(table("Prices (USD per GPU-hour, on demand; override with --price)",
                            ["gpu", "provider", "instance", "$/h", "as of"],
                            [[r["gpu"], r["provider"], r["instance"], r["usd_per_gpu_hour"], r["as_of"]] for r in rows]))
    return None
