"""Specs: what is trained or served, on what, and how it is laid out."""

from capsim.specs.catalog import get_accelerator, get_model, load_catalog, prices
from capsim.specs.hardware import Accelerator, Cluster, Node, Peaks, Topology
from capsim.specs.hf import from_hf_config
from capsim.specs.model import Arch, Mlp, ModelSpec, Norm, Position
from capsim.specs.plans import Quantization, Recompute, Schedule, ServePlan, TrainPlan
from capsim.specs.precision import DType, Precision

__all__ = [
    "Accelerator", "Arch", "Cluster", "DType", "Mlp", "ModelSpec", "Node", "Norm", "Peaks", "Position",
    "Precision", "Quantization", "Recompute", "Schedule", "ServePlan", "TrainPlan", "Topology",
    "from_hf_config", "get_accelerator", "get_model", "load_catalog", "prices",
]
