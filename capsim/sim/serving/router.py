"""Routers: which replica of a pool gets the next request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Protocol, TypeVar

import numpy as np


class Routable(Protocol):
    """What a router reads of a replica."""

    idx: int

    @property
    def outstanding(self) -> int:
        """Requests waiting or running on it."""


R = TypeVar("R", bound=Routable)


class RouterKind(StrEnum):
    ROUND_ROBIN = "round-robin"
    LEAST_OUTSTANDING = "least-outstanding"  # fewest requests waiting or running (ties: lowest index)
    RANDOM = "random"


Router = Callable[[Sequence[R]], R]


def round_robin() -> Router:
    count = [0]

    def pick(pool: Sequence[R]) -> R:
        rep = pool[count[0] % len(pool)]
        count[0] += 1
        return rep

    return pick


def least_outstanding() -> Router:
    def pick(pool: Sequence[R]) -> R:
        return min(pool, key=lambda r: (r.outstanding, r.idx))

    return pick


def random_router(seed: int) -> Router:
    rng = np.random.default_rng(seed)
    draws: list[float] = []

    def pick(pool: Sequence[R]) -> R:
        if not draws:
            draws.extend(rng.random(4096).tolist())  # drawn in blocks: one numpy call per 4096 requests
        return pool[int(draws.pop() * len(pool))]

    return pick


def make_router(kind: RouterKind | str, seed: int = 0) -> Router:
    kind = RouterKind(kind)
    if kind is RouterKind.RANDOM:
        return random_router(seed)
    return {RouterKind.ROUND_ROBIN: round_robin, RouterKind.LEAST_OUTSTANDING: least_outstanding}[kind]()


__all__ = ["Routable", "Router", "RouterKind", "make_router"]
