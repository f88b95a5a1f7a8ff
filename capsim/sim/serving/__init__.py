"""The serving fleet simulator (SimPy): workloads, routers, replicas with batching schedulers, metrics."""

from capsim.sim.serving.fleet import Fleet, ServeConfig, default_perf, engine_plan, kv_blocks, simulate
from capsim.sim.serving.metrics import ServingResult
from capsim.sim.serving.replica import Role
from capsim.sim.serving.router import RouterKind
from capsim.sim.serving.workload import ArrivalKind, LengthKind, Lengths, Workload, diurnal, renewal

__all__ = ["ArrivalKind", "Fleet", "LengthKind", "Lengths", "Role", "RouterKind", "ServeConfig", "ServingResult",
           "Workload", "default_perf", "diurnal", "engine_plan", "kv_blocks", "renewal", "simulate"]
