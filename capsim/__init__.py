"""capsim: simulation and capacity planning for training and serving LLM chatbots.

    >>> import capsim
    >>> model = capsim.get_model("llama-3-8b")
    >>> capsim.param_counts(model).total
    8030261248
"""

from capsim.analytic.flops import matmul_params, megatron_iteration_flops, training_flops_per_token
from capsim.analytic.layouts import Layouts
from capsim.analytic.memory import (
                                    ServingMemory,
                                    TrainingMemory,
                                    kv_cache_bytes_per_token,
                                    serving_memory,
                                    training_memory,
)
from capsim.analytic.ops import (
                                    AttentionImpl,
                                    Op,
                                    OpKind,
                                    Phase,
                                    StepBatch,
                                    serving_layer_ops,
                                    training_layer_ops,
)
from capsim.analytic.params import ParamCounts, param_counts
from capsim.analytic.serving import IterationTime, Sampling, SamplingMode, StepShape, iteration_time
from capsim.analytic.training import StepTime, as_released, release_memory, release_refusal, step_time
from capsim.calibration import Calibration, load_calibration
from capsim.errors import SpecError, UnknownNameError
from capsim.perf import Perf
from capsim.sim.serving import ServeConfig, ServingResult
from capsim.sim.serving import simulate as simulate_serving
from capsim.specs import (
                                    Accelerator,
                                    Arch,
                                    Cluster,
                                    DType,
                                    Mlp,
                                    ModelSpec,
                                    Node,
                                    Precision,
                                    Quantization,
                                    Recompute,
                                    Schedule,
                                    ServePlan,
                                    TrainPlan,
                                    from_hf_config,
                                    get_accelerator,
                                    get_model,
                                    load_catalog,
                                    prices,
)
from capsim.specs.engine import EngineProfile, get_engine
from capsim.validation import Report, Suite, run_suite

__version__ = "0.1.0"

__all__ = [
    "Accelerator", "Arch", "AttentionImpl", "as_released", "release_memory", "release_refusal", "Calibration", "Cluster", "DType", "Layouts", "Mlp", "ModelSpec", "Node",
    "Op", "OpKind", "ParamCounts", "Perf", "Phase", "Precision", "Quantization", "Recompute", "Report", "Schedule",
    "ServePlan", "ServingMemory", "SpecError", "StepBatch", "StepTime", "Suite", "TrainPlan", "TrainingMemory", "UnknownNameError",
    "from_hf_config", "get_accelerator", "get_model", "kv_cache_bytes_per_token", "load_calibration", "load_catalog",
    "matmul_params", "megatron_iteration_flops", "param_counts", "prices", "run_suite", "serving_layer_ops",
    "serving_memory", "step_time", "training_flops_per_token", "training_layer_ops", "training_memory", "__version__",
    # serving
    "EngineProfile", "IterationTime", "Sampling", "SamplingMode", "ServeConfig", "ServingResult", "StepShape",
    "get_engine", "iteration_time", "simulate_serving",
]
