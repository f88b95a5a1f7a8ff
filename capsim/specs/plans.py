"""How a model is laid out for training (TrainPlan) and for serving (ServePlan), with checks that name the fix."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from capsim.errors import SpecError, divisors, require
from capsim.specs.model import ModelSpec, Position
from capsim.specs.pipeline_layout import LayerSplit, default_uneven, even, from_stages, megatron, parse_layout
from capsim.specs.precision import DType, Precision, dtype


class Recompute(StrEnum):
    NONE = "none"
    SELECTIVE = "selective"  # recompute attention's softmax/dropout only (Korthikanti et al. 2022, Sec. 5)
    FULL = "full"  # keep each layer's input, recompute the whole layer in the backward pass

    @property
    def code(self) -> int:
        """Integer code for vectorised sweeps: none=0, selective=1, full=2."""
        return ("none", "selective", "full").index(self.value)


class Schedule(StrEnum):
    GPIPE = "gpipe"  # all forwards, then all backwards (Huang et al. 2019)
    ONE_F_ONE_B = "1f1b"  # PipeDream-flush (Narayanan et al. 2021)
    INTERLEAVED = "interleaved"  # interleaved 1F1B with v model chunks per stage (Narayanan et al. SC21)


def _positive(obj: object, names: tuple[str, ...], prefix: str) -> None:
    for name in names:
        value = getattr(obj, name)
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0, f"{prefix}.{name}",
                f"must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainPlan:
    """A training layout: parallel degrees, memory savers and the batch, for one optimizer step."""

    dp: int = 1  # data-parallel replicas
    tp: int = 1  # tensor-parallel width (Megatron column/row split)
    pp: int = 1  # pipeline stages
    pp_interleave: int = 1  # model chunks per stage, v (interleaved 1F1B when > 1)
    # shard norms/dropout over the TP group (Korthikanti et al. 2022); None = the framework release's default
    # (capsim.analytic.training.step.as_released: off in Megatron's, on wherever TP is in torchtitan's)
    sequence_parallel: bool | None = None
    cp: int = 1  # context-parallel ranks (ring attention over the sequence)
    ep: int = 1  # expert-parallel ranks, carved out of tp x cp x dp with etp (Megatron-Core's MoE parallel folding)
    etp: int | None = None  # tensor-parallel width of the routed experts; None = tp (Megatron-Core's default)
    zero_stage: int = 0  # 0 none, 1 optimizer states, 2 + gradients, 3 + parameters (Rajbhandari et al. 2020)
    distributed_optimizer: bool = False  # Megatron's distributed optimizer: ZeRO-1 sharding of master + moments
    # ZeRO/FSDP sharding group (hybrid sharding, HSDP): shard over this many of the dp x cp ranks and replicate
    # the shards over the rest; None = the whole dp x cp (torchtitan data_parallel_shard_degree, Megatron-FSDP
    # dp x cp / num_distributed_optimizer_instances)
    shard_group: int | None = None
    recompute: Recompute = Recompute.NONE
    micro_batch: int = 1  # sequences per micro-batch on one pipeline
    global_batch: int = 1  # sequences per optimizer step, over all replicas
    seq_len: int = 2048  # tokens per sequence
    schedule: Schedule | None = None  # None = 1F1B, or interleaved when pp_interleave > 1
    # An uneven pipeline, stated one of Megatron-Core's ways (at most one; see capsim.specs.pipeline_layout):
    layer_split: tuple[int, ...] | None = None  # layers per stage (each spread evenly over its v chunks)
    pipeline_layout: str | None = None  # --pipeline-model-parallel-layout, e.g. "Et*7|(t*8|)*14,t*7L" (sets v)
    first_stage_layers: int | None = None  # --decoder-first-pipeline-num-layers
    last_stage_layers: int | None = None  # --decoder-last-pipeline-num-layers
    account_for_embedding: bool = False  # --account-for-embedding-in-pipeline-split: embedding counts as a layer
    account_for_loss: bool = False  # --account-for-loss-in-pipeline-split: the loss counts as a layer
    precision: Precision = field(default_factory=Precision)

    def __post_init__(self) -> None:
        _positive(self, ("dp", "tp", "pp", "pp_interleave", "cp", "ep", "micro_batch", "global_batch", "seq_len"),
                  "plan")
        if self.etp is not None:
            _positive(self, ("etp",), "plan")
        self._check_split_options()
        try:
            object.__setattr__(self, "recompute", Recompute(self.recompute))
        except ValueError:
            raise SpecError("plan.recompute", f"unknown mode {self.recompute!r}", "use none, selective or full") from None
        if self.schedule is None:
            object.__setattr__(self, "schedule", Schedule.INTERLEAVED if self.pp_interleave > 1 else Schedule.ONE_F_ONE_B)
        try:
            object.__setattr__(self, "schedule", Schedule(self.schedule))
        except ValueError:
            raise SpecError("plan.schedule", f"unknown schedule {self.schedule!r}",
                            "use gpipe, 1f1b or interleaved") from None
        if isinstance(self.precision, str):
            object.__setattr__(self, "precision", Precision.preset(self.precision))
        require(self.zero_stage in (0, 1, 2, 3), "plan.zero_stage", f"must be 0-3, got {self.zero_stage!r}")
        if self.shard_group is not None:
            _positive(self, ("shard_group",), "plan")
            require((self.dp * self.cp) % self.shard_group == 0, "plan.shard_group",
                    f"a sharding group of {self.shard_group} does not divide dp x cp = {self.dp * self.cp}",
                    f"use a divisor of {self.dp * self.cp}")
            require(self.zero_stage > 0 or self.distributed_optimizer, "plan.shard_group",
                    "a sharding group needs sharding", "set zero_stage 1-3 (or the distributed optimizer)")
        require(not (self.distributed_optimizer and self.zero_stage), "plan.distributed_optimizer",
                "Megatron's distributed optimizer already shards the optimizer (ZeRO-1)",
                "use distributed_optimizer or zero_stage, not both")
        require(self.global_batch % (self.dp * self.micro_batch) == 0, "plan.global_batch",
                f"{self.global_batch} sequences do not split into micro-batches of {self.micro_batch} "
                f"over dp={self.dp}", f"use a global batch that is a multiple of {self.dp * self.micro_batch}, "
                f"or micro_batch in {[d for d in divisors(max(self.global_batch // self.dp, 1)) if self.global_batch % (self.dp * d) == 0][:8]}")
        require(not self.sequence_parallel or self.tp > 1, "plan.sequence_parallel",
                "sequence parallelism shards over the tensor-parallel group, and tp=1", "set tp > 1 or turn it off")
        if self.schedule is Schedule.INTERLEAVED:
            require(self.pp > 1, "plan.pp_interleave", "interleaving needs pipeline stages", "set pp > 1")
            require(self.micro_batches % self.pp == 0, "plan.global_batch",
                    f"the interleaved schedule needs the micro-batch count ({self.micro_batches}) to be a multiple "
                    f"of pp={self.pp}", "change global_batch, micro_batch or dp")
        elif self.pp_interleave > 1:
            raise SpecError("plan.schedule", f"{self.schedule} has one model chunk per stage",
                            "set pp_interleave=1 or schedule='interleaved'")

    def _check_split_options(self) -> None:
        """At most one way of stating the split (Megatron-Core refuses the others together); a layout string
        gives the chunks per stage, v (Megatron-LM arguments.py: stages // pp)."""
        ways = [name for name, on in (("layer_split", self.layer_split is not None),
                                      ("pipeline_layout", self.pipeline_layout is not None),
                                      ("first_stage_layers/last_stage_layers",
                                       self.first_stage_layers is not None or self.last_stage_layers is not None),
                                      ("account_for_embedding/account_for_loss",
                                       self.account_for_embedding or self.account_for_loss)) if on]
        require(len(ways) <= 1, f"plan.{ways[-1].split('/')[0] if ways else 'layer_split'}",
                f"the pipeline split is stated {len(ways)} ways ({', '.join(ways)})", "keep one of them")
        if self.layer_split is not None:
            object.__setattr__(self, "layer_split", tuple(int(n) for n in self.layer_split))
            require(len(self.layer_split) == self.pp, "plan.layer_split",
                    f"{len(self.layer_split)} stage sizes given for pp={self.pp}", f"give {self.pp} sizes")
        if self.pipeline_layout is not None:
            v = parse_layout(self.pipeline_layout, self.pp).v
            require(self.pp_interleave in (1, v), "plan.pp_interleave", f"{self.pp_interleave} disagrees with the "
                    f"layout's {v} virtual stages per rank", f"set pp_interleave={v} or leave it out")
            object.__setattr__(self, "pp_interleave", v)

    def split(self, model: ModelSpec) -> LayerSplit:
        """The decoder layers of every stage and model chunk, as Megatron-Core would build them from the stated
        option; with none stated, the even split, or where pp x v does not divide the layers the uneven split a
        layout search prices (``default_uneven``; its ``rule`` says which). Raises SpecError naming the option
        and the fix when no split can be built."""
        layers, p, v = model.total_layers, self.pp, self.pp_interleave
        if self.pipeline_layout is not None:
            out = parse_layout(self.pipeline_layout, p)
            require(out.total == layers, "plan.pipeline_layout", f"the layout holds {out.total} transformer layers "
                    f"(t), {model.name} has {layers}", f"place exactly {layers} t's")
            return out
        if self.layer_split is not None:
            require(sum(self.layer_split) == layers, "plan.layer_split", f"{list(self.layer_split)} sums to "
                    f"{sum(self.layer_split)}, {model.name} has {layers} layers", f"give sizes summing to {layers}")
            return from_stages(self.layer_split, v)
        if self.first_stage_layers is not None or self.last_stage_layers is not None or self.account_for_embedding \
                or self.account_for_loss:
            return megatron(layers, p, v, self.first_stage_layers, self.last_stage_layers,
                            self.account_for_embedding, self.account_for_loss)
        return default_uneven(layers, p, v) or even(layers, p, v)

    @property
    def num_gpus(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def expert_tp(self) -> int:
        """The routed experts' tensor-parallel width (tp unless ``etp`` states another)."""
        return self.tp if self.etp is None else self.etp

    @property
    def micro_batches(self) -> int:
        """Micro-batches each pipeline runs per step (gradient-accumulation steps when pp = 1)."""
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    def check(self, model: ModelSpec, num_gpus: int | None = None) -> TrainPlan:
        """Raise :class:`SpecError` naming the field and the fix if this plan cannot run ``model``."""
        require(model.heads % self.tp == 0, "plan.tp", f"tp={self.tp} does not divide {model.name}'s "
                f"{model.heads} attention heads", f"use tp in {divisors(model.heads)}")
        require(model.kv_heads % self.tp == 0, "plan.tp", f"tp={self.tp} does not divide {model.name}'s "
                f"{model.kv_heads} KV heads", f"use tp in {divisors(model.kv_heads)}")
        for name, width in model.tp_widths.items():
            require(width % self.tp == 0, "plan.tp", f"tp={self.tp} does not divide {name}={width}",
                    f"use tp in {[d for d in divisors(width) if d <= 64]}")
        if model.is_moe:
            require(model.ffn_hidden % self.expert_tp == 0, "plan.etp", f"the routed experts' tensor-parallel "
                    f"width {self.expert_tp} does not divide their ffn_hidden={model.ffn_hidden}",
                    f"use etp in {[d for d in divisors(model.ffn_hidden) if d <= 64]}")
        if num_gpus is not None:
            require(self.num_gpus == num_gpus, "plan", f"dp*tp*pp*cp = {self.dp}*{self.tp}*{self.pp}*{self.cp} = "
                    f"{self.num_gpus}, but {num_gpus} GPUs were given", "change dp, tp, pp or cp so the product "
                    f"is {num_gpus}")
        self.split(model)
        require(self.seq_len % self.cp == 0, "plan.cp", f"cp={self.cp} does not divide seq_len={self.seq_len}",
                f"use cp in {[d for d in divisors(self.seq_len) if d <= 64]}")
        # a recurrent layer's state crosses the CP shards in order; only the ring attention exchange is priced
        require(self.cp == 1 or not model.is_hybrid, "plan.cp", "context parallelism of Mamba-2 / Gated DeltaNet "
                "layers is not modelled", "use cp=1 for a hybrid model")
        if model.position is Position.LEARNED:
            require(self.seq_len <= model.max_seq, "plan.seq_len", f"{self.seq_len} exceeds {model.name}'s "
                    f"{model.max_seq} learned positions", f"use seq_len <= {model.max_seq}")
        if self.ep > 1 or self.expert_tp != self.tp:
            self._check_experts(model)
        return self

    def _check_experts(self, model: ModelSpec) -> None:
        """Megatron-Core lays EP x ETP over the tp x cp x dp ranks of a stage (parallel_state.py, expert rank
        generator, order tp-ep-dp)."""
        require(model.is_moe, "plan.ep", f"{model.name} is dense; expert parallelism needs experts", "set ep=1")
        require(model.experts % self.ep == 0, "plan.ep", f"ep={self.ep} does not divide {model.experts} experts",
                f"use ep in {divisors(model.experts)}")
        require(self.tp % self.expert_tp == 0, "plan.etp", f"etp={self.expert_tp} does not divide tp={self.tp}",
                f"use etp in {divisors(self.tp)}")
        ranks = self.tp * self.cp * self.dp
        require(ranks % (self.ep * self.expert_tp) == 0, "plan.ep", f"ep x etp = {self.ep} x {self.expert_tp} "
                f"does not divide tp x cp x dp = {ranks} (experts are laid over those ranks)",
                f"use ep in {[d for d in divisors(ranks // self.expert_tp) if model.experts % d == 0]}")

    def with_(self, **changes: object) -> TrainPlan:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "precision"}
        out["recompute"] = self.recompute.value
        out["schedule"] = self.schedule.value
        out["layer_split"] = list(self.layer_split) if self.layer_split else None
        out["precision"] = self.precision.to_dict()
        return out


class Quantization(StrEnum):
    """Serving weight/activation formats (weight-only schemes keep 16-bit math)."""

    NONE = "none"  # weights in the serving dtype
    INT8 = "int8"  # W8A16 weight-only (LLM.int8 / GPTQ-8)
    INT4 = "int4"  # W4A16 weight-only (AWQ, GPTQ)
    FP8 = "fp8"  # W8A8 fp8 weights and activations (Hopper+)
    W8A8_INT8 = "w8a8-int8"  # SmoothQuant int8 weights and activations
    # W4A4 NVFP4 weights and activations on Blackwell's block-scaled FP4 tensor cores (TensorRT-LLM perf-overview.md
    # v1.0 "FP4 Models": ModelOpt's nvidia/*-FP4 checkpoints run at the B200/GB200 FP4 rate)
    NVFP4 = "nvfp4"

    def weight_dtype(self, base: DType) -> DType:
        return {Quantization.NONE: base, Quantization.INT8: DType.INT8, Quantization.INT4: DType.INT4,
                Quantization.FP8: DType.FP8, Quantization.W8A8_INT8: DType.INT8, Quantization.NVFP4: DType.NVFP4}[self]

    def compute_dtype(self, base: DType) -> DType:
        return {Quantization.FP8: DType.FP8, Quantization.W8A8_INT8: DType.INT8,
                Quantization.NVFP4: DType.NVFP4}.get(self, base)


@dataclass(frozen=True)
class ServePlan:
    """A serving deployment: replicas of one engine layout and its batching limits."""

    tp: int = 1
    pp: int = 1
    replicas: int = 1
    max_batch: int = 256  # most sequences in one engine step (vLLM max_num_seqs)
    max_batched_tokens: int = 8192  # most tokens in one engine step (vLLM max_num_batched_tokens)
    quantization: Quantization = Quantization.NONE
    dtype: DType = DType.BF16  # serving dtype of unquantized weights and activations
    kv_cache_dtype: DType | None = None  # None = dtype
    gpu_memory_utilization: float = 0.9  # fraction of device memory the engine may use (vLLM's flag)
    block_size: int = 16  # tokens per paged-KV block (vLLM default)
    # MoE serving inside a TP group: routed experts split over ``ep`` of its GPUs, each expert whole (vLLM
    # --enable-expert-parallel, SGLang --ep-size, TensorRT-LLM moe_expert_parallel_size); 1 = experts split by TP.
    ep: int = 1
    # Attention data-parallel over the TP group: each GPU attends its own share of the sequences with every head,
    # the MoE layers run across the group (SGLang --enable-dp-attention, TensorRT-LLM enable_attention_dp).
    dp_attention: bool = False
    # A KV-cache size given outright, bytes per GPU (CPU rank): vLLM's --kv-cache-memory-bytes, or its CPU
    # backend's VLLM_CPU_KVCACHE_SPACE (GiB); None = sized from memory by the engine's rule.
    kv_cache_bytes: float | None = None

    def __post_init__(self) -> None:
        _positive(self, ("tp", "pp", "replicas", "max_batch", "max_batched_tokens", "block_size", "ep"), "plan")
        require(self.kv_cache_bytes is None or self.kv_cache_bytes > 0, "plan.kv_cache_bytes",
                f"must be > 0, got {self.kv_cache_bytes}", "give the KV-cache space in bytes, or leave it out")
        require(self.tp % self.ep == 0, "plan.ep", f"ep={self.ep} must divide tp={self.tp}",
                "experts are split over GPUs of the TP group: use ep in " + str(divisors(self.tp)))
        require(isinstance(self.dp_attention, bool), "plan.dp_attention", f"must be true or false, got "
                f"{self.dp_attention!r}")
        try:
            object.__setattr__(self, "quantization", Quantization(str(self.quantization).lower()))
        except ValueError:
            raise SpecError("plan.quantization", f"unknown scheme {self.quantization!r}",
                            f"use one of {', '.join(q.value for q in Quantization)}") from None
        object.__setattr__(self, "dtype", dtype(self.dtype, "plan.dtype"))
        kv = self.dtype if self.kv_cache_dtype is None else dtype(self.kv_cache_dtype, "plan.kv_cache_dtype")
        object.__setattr__(self, "kv_cache_dtype", kv)
        require(0.0 < self.gpu_memory_utilization <= 1.0, "plan.gpu_memory_utilization",
                f"must be in (0, 1], got {self.gpu_memory_utilization}")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    @property
    def weight_dtype(self) -> DType:
        return self.quantization.weight_dtype(self.dtype)

    @property
    def compute_dtype(self) -> DType:
        return self.quantization.compute_dtype(self.dtype)

    def kv_replication(self, model: ModelSpec) -> int:
        """How many TP ranks hold a copy of each KV head (vLLM replicates when tp > kv_heads)."""
        return max(1, self.tp // model.kv_heads)

    def check(self, model: ModelSpec) -> ServePlan:
        if not self.dp_attention:  # attention split by TP
            self._check_attention_tp(model)
        require(model.total_layers % self.pp == 0, "plan.pp", f"pp={self.pp} does not divide "
                f"{model.total_layers} layers", f"use pp in {divisors(model.total_layers)}")
        if self.ep > 1 or self.dp_attention:
            require(model.is_moe, "plan.ep" if self.ep > 1 else "plan.dp_attention",
                    f"{model.name} has no experts", "expert and attention data parallelism serve MoE models")
        if self.ep > 1:
            require(model.experts % self.ep == 0, "plan.ep", f"ep={self.ep} does not divide {model.experts} "
                    "experts", f"use ep in {[d for d in divisors(self.tp) if model.experts % d == 0]}")
        return self

    def _check_attention_tp(self, model: ModelSpec) -> None:
        require(model.heads % self.tp == 0, "plan.tp", f"tp={self.tp} does not divide {model.name}'s "
                f"{model.heads} attention heads", f"use tp in {divisors(model.heads)}")
        require(model.kv_heads % self.tp == 0 or self.tp % model.kv_heads == 0, "plan.tp",
                f"tp={self.tp} neither divides nor is a multiple of {model.kv_heads} KV heads",
                f"use tp in {sorted(set(divisors(model.kv_heads)) | {d for d in divisors(model.heads) if d % model.kv_heads == 0})}")
        # a hybrid's recurrent heads split by TP as vLLM shards them (divide(num_heads, tp_world_size),
        # MambaStateShapeCalculator, vllm/model_executor/layers/mamba/mamba_utils.py @02d71083)
        require(not model.is_hybrid or model.ssm_heads % self.tp == 0, "plan.tp", f"tp={self.tp} does not divide "
                f"{model.name}'s {model.ssm_heads} recurrent heads", f"use tp in {divisors(model.ssm_heads)}")

    def with_(self, **changes: object) -> ServePlan:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in self.__dict__.items()}
