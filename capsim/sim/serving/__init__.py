"""The serving fleet simulator (SimPy): workloads, routers, replicas with batching schedulers, metrics."""

from capsim.sim.serving.budget import DEFAULT_MAX_EVENTS, WorkEstimate, check_work, estimate_work
from capsim.sim.serving.fleet import Fleet, ServeConfig, engine_plan, kv_blocks, simulate
from capsim.sim.serving.metrics import ServingResult
from capsim.sim.serving.replica import Role
from capsim.sim.serving.router import RouterKind
from capsim.sim.serving.workload import ArrivalKind, LengthKind, Lengths, Workload, diurnal, renewal

__all__ = ["DEFAULT_MAX_EVENTS", "ArrivalKind", "Fleet", "LengthKind", "Lengths", "Role", "RouterKind", "ServeConfig",
           "ServingResult", "WorkEstimate", "Workload", "check_work", "diurnal", "engine_plan", "estimate_work",
           "kv_blocks", "renewal", "simulate"]
