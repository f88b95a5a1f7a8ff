"""Routers: which replica of a pool gets the next request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from capsim.sim.serving.replica import Replica


class RouterKind(StrEnum):
    ROUND_ROBIN = "round-robin"
    LEAST_OUTSTANDING = "least-outstanding"  # fewest requests waiting or running (ties: lowest index)
    RANDOM = "random"


Router = Callable[[Sequence["Replica"]], "Replica"]


def round_robin() -> Router:
    count = [0]

    def pick(pool: Sequence[Replica]) -> Replica:
        rep = pool[count[0] % len(pool)]
        count[0] += 1
        return rep

    return pick


def least_outstanding() -> Router:
    def pick(pool: Sequence[Replica]) -> Replica:
        return min(pool, key=lambda r: (r.outstanding, r.idx))

    return pick


def random_router(seed: int) -> Router:
    rng = np.random.default_rng(seed)
    draws: list[float] = []

    def pick(pool: Sequence[Replica]) -> Replica:
        if not draws:
            draws.extend(rng.random(4096).tolist())  # drawn in blocks: one numpy call per 4096 requests
        return pool[int(draws.pop() * len(pool))]

    return pick


def make_router(kind: RouterKind | str, seed: int = 0) -> Router:
    kind = RouterKind(kind)
    if kind is RouterKind.RANDOM:
        return random_router(seed)
    return {RouterKind.ROUND_ROBIN: round_robin, RouterKind.LEAST_OUTSTANDING: least_outstanding}[kind]()


__all__ = ["Router", "RouterKind", "make_router"]
