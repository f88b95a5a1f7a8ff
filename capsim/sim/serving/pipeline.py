"""Pipeline-parallel replicas served with concurrent batches, one per stage (vLLM's virtual engines).

A replica of ``pp`` pipeline stages keeps up to ``pp`` batches in flight, so every stage works on one batch while
the others work on theirs. The engines do it so:

- vLLM V0 (the V0 engine since its pipeline-parallel serving, PR #4412): ``LLMEngine`` builds one ``Scheduler``
  per virtual engine, ``[Scheduler(...) for v_id in range(parallel_config.pipeline_parallel_size)]``, each with the
  whole ``scheduler_config`` (so each batches up to ``max_num_seqs``); ``_add_processed_request`` gives a new
  request to the scheduler with the fewest unfinished sequence groups (``costs.index(min(costs))``: ties go to the
  first); each ``Scheduler.__init__`` keeps ``num_gpu_blocks //= pipeline_parallel_size`` of the KV cache
  (vllm-project/vllm vllm/engine/llm_engine.py @1473f7418a04, vllm/core/scheduler.py @0dce2b29aaaa); the
  ``AsyncLLMEngine`` runs one engine loop per virtual engine, each waiting for its own step's output.
- vLLM V1: ``EngineCore`` keeps a batch queue of ``model_executor.max_concurrent_batches`` scheduled batches
  (vllm/v1/engine/core.py "Batch queue ... required by pipeline parallelism to eliminate pipeline bubbles"), and
  the multiprocessing and Ray executors return ``parallel_config.pipeline_parallel_size`` for it
  (vllm/v1/executor/multiproc_executor.py @c5c40ab25278, ray_distributed_executor.py @466716c2bb5f): one scheduler
  and one KV pool, with a request in at most one batch in flight.
  (Files cited by the commit of the stored copy read; the release tags were not checked: vLLM's repository is over
  the size this project's fetch brings.)

capsim serves both as V0 does: ``pp`` virtual engines, each a :class:`~capsim.sim.serving.replica.Replica` with
``1/pp`` of the replica's KV blocks, whose step takes the whole pipeline's traversal (every stage's share of the
layers, plus the activations sent between stages: :func:`capsim.analytic.serving.iteration_time`). Steady state:
``pp`` batches each traverse the pipeline once per step, so the replica's throughput is ``pp`` times one batch's
rate while each token still waits for a whole traversal. Not modelled: two virtual engines that reach a stage at
once queue there (the engines' batches are taken as interleaving without conflict, exact when they are alike or
only one is busy, optimistic when their batches differ); V1's single KV pool is split like V0's.
"""

from __future__ import annotations

from capsim.sim.serving.replica import Replica


class VirtualEngines:
    """One pipeline-parallel replica: its virtual engines, routed to as one replica by the fleet's routers."""

    def __init__(self, idx: int, engines: list[Replica]) -> None:
        if not engines:
            raise ValueError('"engines" must hold at least one virtual engine.')
        self.idx, self.engines = idx, engines

    @property
    def outstanding(self) -> int:
        """Requests waiting or running on any of its virtual engines (what the fleet's routers compare)."""
        return sum(e.outstanding for e in self.engines)

    def pick(self) -> Replica:
        """The virtual engine with the fewest unfinished requests, the first on ties (vLLM V0
        LLMEngine._add_processed_request: ``self.scheduler[costs.index(min(costs))]``)."""
        return min(self.engines, key=lambda e: e.outstanding)


def group(engines: list[Replica], stages: int) -> list[VirtualEngines]:
    """Consecutive runs of ``stages`` virtual engines as one replica each."""
    return [VirtualEngines(i, engines[i * stages:(i + 1) * stages]) for i in range(len(engines) // stages)]


__all__ = ["VirtualEngines", "group"]
