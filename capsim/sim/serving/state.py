"""Per-request state shared by every replica of a fleet (plain lists: scalar access is the hot path)."""

from __future__ import annotations

import numpy as np


class Requests:
    """Lengths and progress of every request, indexed by request id (arrival order)."""

    def __init__(self, prompt: np.ndarray, output: np.ndarray, arrival: np.ndarray | None,
                 prefix_group: np.ndarray | None = None, prefix_tokens: np.ndarray | None = None) -> None:
        n = len(prompt)
        self.n = n
        self.prompt = np.asarray(prompt).astype(np.int64).tolist()  # Python ints: scalar access is the hot path
        self.output = np.asarray(output).astype(np.int64).tolist()
        self.arrival = [0.0] * n if arrival is None else np.asarray(arrival, float).tolist()
        nan = float("nan")
        self.todo = list(self.prompt)  # prompt tokens to compute (prompt + generated after a preemption)
        self.done = [0] * n  # of those, already in the KV cache
        self.gen = [0] * n  # tokens emitted so far
        self.c_join = [0] * n  # KV length when it joined the decoding set
        self.d_join = [0] * n  # the replica's decode-step count then
        self.g_join = [0] * n  # tokens emitted then
        self.epoch = [0] * n  # bumps when a request leaves a decoding set (invalidates heap entries)
        self.start_s = [nan] * n  # first scheduled
        self.first_s = [nan] * n  # first token
        self.finish_s = [nan] * n
        self.last_emit_s = [nan] * n
        self.preemptions = [0] * n
        self.replica = [-1] * n
        self.decode_replica = [-1] * n
        self.finished = 0
        # Prefix caching (capsim.sim.serving.prefix): the request's prefix group (-1: none) and how many of its
        # leading prompt tokens are the group's; on its replica, the group blocks it shares (not its own) and
        # whether it holds a reference to its group there.
        self.group = [-1] * n if prefix_group is None else np.asarray(prefix_group).astype(np.int64).tolist()
        self.prefix = [0] * n if prefix_tokens is None else np.asarray(prefix_tokens).astype(np.int64).tolist()
        self.shared = [0] * n
        self.held = [False] * n

    def to_arrays(self) -> dict[str, np.ndarray]:
        f, i = as_array, np.int64
        return {"arrival_s": f(self.arrival), "prompt_tokens": f(self.prompt, i), "output_tokens": f(self.output, i),
                "start_s": f(self.start_s), "first_token_s": f(self.first_s), "finish_s": f(self.finish_s),
                "preemptions": f(self.preemptions, i), "replica": f(self.replica, i),
                "decode_replica": f(self.decode_replica, i)}


def as_array(values: list, dtype: type = float) -> np.ndarray:
    """A list as a numpy array (np.fromiter: about twice as fast as np.asarray on a list of Python numbers)."""
    return np.fromiter(values, dtype, len(values))
