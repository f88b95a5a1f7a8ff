"""Suite ``local``: real torch decoders timed on this machine against capsim's predictions.

Each row builds a GPT-style or Llama-style decoder (kernels/models.py), times a training step (forward, backward,
Adam), a prefill or a decode step with a KV cache, and predicts it from a measured calibration through capsim's own
op list (``training_layer_ops``/``backward_ops``/``head_ops``/``optimizer_ops``, ``serving_layer_ops``) and
``Perf``: one code path for every row, nothing fitted to these timings. Data parallel rows run two gloo processes
of DistributedDataParallel, predicted as compute at one thread per process plus the gradient all-reduce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from capsim.analytic.ops import Phase, StepBatch, backward_ops, head_ops, optimizer_ops, serving_layer_ops
from capsim.analytic.ops import training_layer_ops as layer_ops
from capsim.analytic.params import param_counts
from capsim.calibration import Calibration, available, load_calibration
from capsim.errors import SpecError
from capsim.perf import Perf
from capsim.specs.model import Mlp, ModelSpec, Norm, Position
from capsim.specs.precision import DType, Precision
from capsim.validation.harness import Report, Row

VOCAB, MAX_SEQ, HEAD_DIM = 8192, 1024, 64
DDP_BUCKET_BYTES = 25 * 2**20  # DistributedDataParallel's bucket_cap_mb=25 default (torch docs)
DDP_FIRST_BUCKET_BYTES = 2**20  # torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES
METRIC = {"train": "train_step_s", "prefill": "prefill_s", "decode": "decode_step_s", "ddp": "ddp_train_step_s",
          "pp": "pp_train_step_s"}
PP_MICRO_BATCHES = 4  # kernels.local_bench.PP_MICRO_BATCHES (kept apart: this module never imports torch)


@dataclass(frozen=True)
class Case:
    family: str  # gpt or llama
    hidden: int
    layers: int
    phase: str  # train, prefill, decode, ddp
    batch: int  # sequences (per rank for ddp)
    length: int  # sequence length; tokens already cached for decode

    @property
    def heads(self) -> int:
        return self.hidden // HEAD_DIM

    @property
    def kv_heads(self) -> int:
        return max(self.heads // 4, 1) if self.family == "llama" else self.heads  # GQA 4:1 for Llama

    @property
    def ffn(self) -> int:
        return 64 * round(8 * self.hidden / 3 / 64) if self.family == "llama" else 4 * self.hidden

    @property
    def name(self) -> str:
        what = f"ctx{self.length}" if self.phase == "decode" else f"s{self.length}"
        return f"{self.family}-h{self.hidden}-l{self.layers} {self.phase} b{self.batch} {what}"

    def config(self) -> dict:
        return {"family": self.family, "hidden": self.hidden, "layers": self.layers, "heads": self.heads,
                "kv_heads": self.kv_heads, "ffn": self.ffn, "vocab": VOCAB, "max_seq": MAX_SEQ, "head_dim": HEAD_DIM}


def _grid(widths: tuple[int, ...], layers: int, train: tuple[int, int], prefill: tuple[int, int],
          decode: tuple[int, int], ddp: tuple[int, int] | None) -> list[Case]:
    out = []
    for family in ("gpt", "llama"):
        for h in widths:
            out += [Case(family, h, layers, "train", *train), Case(family, h, layers, "prefill", *prefill),
                    Case(family, h, layers, "decode", *decode)]
        if ddp:
            out.append(Case(family, widths[0], layers, "ddp", *ddp))
            out.append(Case(family, widths[0], layers, "pp", *ddp))
    return out


# Widths 256/512/768: 768 lies between the quick calibration's GEMM widths, so it also tests interpolation.
SIZES = {"default": _grid((256, 512, 768), 4, (2, 256), (2, 256), (8, 256), (2, 256)),
         "small": [c for c in _grid((256,), 2, (1, 128), (1, 128), (4, 128), (1, 128))
                   if c.phase not in ("ddp", "pp") or c.family == "gpt"]}


def spec(case: Case) -> ModelSpec:
    """The capsim description of the torch model a case builds (untied LM head; fp32 everywhere)."""
    llama = case.family == "llama"
    return ModelSpec(name=f"{case.family}-h{case.hidden}", hidden=case.hidden, layers=case.layers, heads=case.heads,
                     vocab=VOCAB, kv_heads=case.kv_heads, head_dim=HEAD_DIM, ffn_hidden=case.ffn,
                     mlp=Mlp.SWIGLU if llama else Mlp.GELU, norm=Norm.RMSNORM if llama else Norm.LAYERNORM,
                     position=Position.ROPE if llama else Position.LEARNED, max_seq=MAX_SEQ, tied_embeddings=False,
                     bias=not llama)


def predict(perf: Perf, case: Case) -> float:
    """Seconds for one step of ``case`` from capsim's op list (fp32 model, flash attention)."""
    model, b, n = spec(case), case.batch, case.length
    dt = DType.FP32
    if case.phase in ("train", "ddp"):
        fwd = layer_ops(model, b, n, dtype=dt, phase=Phase.FORWARD)
        head = head_ops(model, b * n, dtype=dt)
        opt = optimizer_ops(param_counts(model).total, Precision.preset("fp32"))
        return float(model.layers * (perf.ops_s(fwd) + perf.ops_s(backward_ops(fwd))) + perf.ops_s(head)
                     + perf.ops_s(backward_ops(head)) + perf.ops_s(opt))
    batch = StepBatch.prefill(b, n) if case.phase == "prefill" else StepBatch.decode(b, n)
    tokens = b * n if case.phase == "prefill" else b
    return float(model.layers * perf.ops_s(serving_layer_ops(model, batch, dtype=dt))
                 + perf.ops_s(head_ops(model, tokens, dtype=dt, logits_tokens=b)))


def ddp_buckets(grad_bytes: float) -> np.ndarray:
    """Bytes of each gradient bucket DDP all-reduces: a 1 MiB first bucket, then 25 MiB buckets."""
    first = min(grad_bytes, DDP_FIRST_BUCKET_BYTES)
    rest = grad_bytes - first
    full, tail = divmod(rest, DDP_BUCKET_BYTES)
    return np.array([first] + [DDP_BUCKET_BYTES] * int(full) + ([tail] if tail else []))


def predict_ddp(perf: Perf, case: Case, world: int) -> tuple[float, float]:
    """(step seconds, all-reduce seconds): compute plus every bucket's all-reduce, none hidden.

    Each process computes with one thread on its own core, so no core is left to run gloo's all-reduce
    alongside the backward pass: the reduction adds to the step (on GPUs NCCL runs on the network engines and
    overlaps; here it cannot)."""
    comm = float(np.sum(perf.collective_s("all_reduce", ddp_buckets(4.0 * param_counts(spec(case)).total), world)))
    return predict(perf, case) + comm, comm


def predict_pp(perf: Perf, case: Case, world: int = 2, micro_batches: int = PP_MICRO_BATCHES) -> tuple[float, float]:
    """(step seconds, bubble seconds) of a ``world``-stage 1F1B pipeline of ``case``'s model, one thread per stage.

    Each stage's forward and backward per micro-batch come from the op list (its half of the layers; the embedding
    on the first stage, the final norm, LM head and loss on the last), a hop is the calibration's send/recv of one
    activation, and the SimPy pipeline schedule (capsim.sim.pipeline) orders them; each stage's Adam follows."""
    from capsim.sim.pipeline import simulate_pipeline

    model, b, n = spec(case), case.batch, case.length
    dt = DType.FP32
    fwd = layer_ops(model, b, n, dtype=dt, phase=Phase.FORWARD)
    layer_f, layer_b = perf.ops_s(fwd), perf.ops_s(backward_ops(fwd))
    head = {op.name: op for op in head_ops(model, b * n, dtype=dt)}
    first = [head["embedding"]]
    last = [head[k] for k in ("final_norm", "lm_head", "logits_softmax")]
    per_stage = model.layers / world
    f = np.array([[per_stage * layer_f + perf.ops_s(first if s == 0 else [])
                   + perf.ops_s(last if s == world - 1 else [])] for s in range(world)])
    bw = np.array([[per_stage * layer_b + perf.ops_s(backward_ops(first) if s == 0 else [])
                    + perf.ops_s(backward_ops(last) if s == world - 1 else [])] for s in range(world)])
    hop = float(perf.collective_s("send_recv", 4.0 * b * n * model.hidden, 2))
    pc = param_counts(model)
    stage_params = [pc.embedding + pc.per_layer * per_stage, pc.per_layer * per_stage + pc.lm_head + pc.other]
    adam = max(perf.ops_s(optimizer_ops(p, Precision.preset("fp32"))) for p in stage_params)
    res = simulate_pipeline(f, bw, micro_batches, "1f1b", p2p_s=hop, blocking_p2p=False, tail_s=float(adam))
    return res.step_s, res.bubble_s


def default_calibration() -> Calibration:
    """The newest measured CPU calibration under the calibrations' measured/ folder."""
    found = []
    for name, path in available().items():
        if path.parent.name == "measured" and name.startswith("cpu-"):
            cal = load_calibration(path)
            found.append((cal.created, cal))
    if not found:
        raise SpecError("--calibration", "no measured CPU calibration found",
                        "run `capsim calibrate --quick` first, or pass --calibration PATH")
    return max(found, key=lambda x: x[0])[1]


def local_suite(path: object = None, calibration: str | None = None, size: str = "default",
                repeats: int = 5, quiet_wait_s: float = 90.0) -> Report:
    """Time every case of ``size`` here and compare with the calibration's predictions."""
    if path is not None:
        raise SpecError("--file", "the local suite times models on this machine", "drop --file")
    if size not in SIZES:
        raise SpecError("size", f"unknown size {size!r}", f"use one of {', '.join(SIZES)}")
    cal = default_calibration() if calibration is None else load_calibration(calibration)
    from capsim.validation.local_run import measure

    cases = SIZES[size]
    threads = int(cal.host.get("threads") or os.cpu_count() or 1)
    timings, notes = measure(cases, threads, repeats, quiet_wait_s=quiet_wait_s)
    ddp_perf = cal.perf("threads=1") if "threads=1" in cal.variants else cal.perf()
    if threads != 1 and "threads=1" not in cal.variants:
        notes.append(f"{cal.name} has no 1-thread variant: data-parallel compute priced at {threads} threads")
    rows = [_row(case, timing, cal, ddp_perf, threads) for case, timing in zip(cases, timings, strict=True)]
    mine = _this_cpu()
    if cal.device.get("name") not in (None, mine):
        notes.append(f"calibration {cal.name} was measured on {cal.device.get('name')}, this is {mine}")
    return Report("local", cal.name, tuple(rows), tuple(notes))


def _row(case: Case, timing: dict, cal: Calibration, ddp_perf: Perf, threads: int) -> Row:
    """Single-process rows: median over repeats of the compute thread's CPU time. Data-parallel rows need the wall
    clock (waiting for the peer is part of the step): their median is over the steps during which other processes
    kept less than a quarter core busy (measured from /proc/stat), or over all steps when fewer than 3 were."""
    spread = f"spread {timing['spread']:.1%} (IQR/median) over {timing['repeats']} repeats"
    if case.phase == "pp":
        pred, bubble = predict_pp(ddp_perf, case)
        which = (f"median of the {timing['quiet_steps']} undisturbed of {timing['steps']} steps" if timing["quiet_steps"]
                 else f"median of all {timing['steps']} steps (fewer than 3 undisturbed)")
        note = (f"{which}, wall clock, {spread}; 2 gloo stages x 1 thread, 1F1B over {PP_MICRO_BATCHES} micro-batches "
                f"of {case.batch}; bubble {bubble * 1e3:.1f} ms of the prediction")
        return Row(ddp_perf.name, case.name, METRIC[case.phase], timing["median_s"], pred, "s", note)
    if case.phase == "ddp":
        pred, comm = predict_ddp(ddp_perf, case, 2)
        which = (f"median of the {timing['quiet_steps']} undisturbed of {timing['steps']} steps" if timing["quiet_steps"]
                 else f"median of all {timing['steps']} steps (fewer than 3 undisturbed)")
        note = (f"{which}, wall clock, {spread} (all steps: median {timing['all_steps_median_s'] * 1e3:.1f} ms; rank-0 "
                f"process CPU {timing['process_cpu_s'] * 1e3:.1f} ms); all-reduce {comm * 1e3:.1f} ms of the "
                "prediction; 2 gloo processes x 1 thread")
        return Row(ddp_perf.name, case.name, METRIC[case.phase], timing["median_s"], pred, "s", note)
    clock = "thread CPU time" if timing.get("clock") == "thread" else "wall clock"
    return Row(cal.perf().name, case.name, METRIC[case.phase], timing["median_s"], predict(cal.perf(), case), "s",
               f"median, {clock}, {spread}; {threads} thread(s)")


def _this_cpu() -> str:
    from kernels.harness import device_name

    return device_name("cpu")


__all__ = ["SIZES", "Case", "ddp_buckets", "default_calibration", "local_suite", "predict", "predict_ddp", "predict_pp",
           "spec"]
