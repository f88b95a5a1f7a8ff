"""What a replica's run leaves for the metrics: busy time, preemptions, its scheduling time series and its
inter-token gaps, in memory that grows with requests and decode runs, never with decode steps.

A replica writes a :class:`ReplicaRecord`; :mod:`capsim.sim.serving.metrics` reads it. Columns grow as Python
lists (appending to a list is the cheapest write in the hot loop) and move to float64 blocks (8 bytes a value)
every :data:`BLOCK` values, so a million-request run holds arrays, not tens of millions of Python floats.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from capsim.sim.serving.state import as_array

BLOCK = 1 << 15  # values a column holds as Python objects before they move to a float64 block

TIMELINE = ("time_s", "decoding", "prefilling", "waiting", "kv_blocks_used")  # one row per scheduling decision
RUN_FIELDS = ("a", "b", "first", "end", "weight")  # gaps a + b j at steps j in [first, end), seen by weight sequences


class Column:
    """A growing column of numbers: ``items`` (a list to append to) spilled into float64 blocks."""

    __slots__ = ("blocks", "items")

    def __init__(self) -> None:
        self.items: list[float] = []
        self.blocks: list[np.ndarray] = []

    def spill(self) -> None:
        """Move the appended values to a float64 block once there are enough of them."""
        if len(self.items) >= BLOCK:
            self.blocks.append(as_array(self.items))
            self.items.clear()  # in place: writers keep their reference to the list

    def array(self) -> np.ndarray:
        return np.concatenate([*self.blocks, as_array(self.items)])

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks) + len(self.items)


class ReplicaRecord:
    """One replica's output, written during the run (fields are appended to in flat groups).

    - ``timeline``: (t, decoding, prefilling, waiting, kv blocks used) at each scheduling decision;
    - ``gaps``: inter-token gaps stored one by one with their weight (sequences that saw them): the first step of
      each decode run, mixed prefill/decode steps, sequences that just joined;
    - ``runs``: the later steps of each decode run of k steps as arithmetic progressions, one per piece of the
      run's step-time envelope (:data:`RUN_FIELDS`), so a run of thousands of steps costs five numbers.
    """

    __slots__ = ("busy_s", "gaps", "idx", "preemptions", "prefix_hit_tokens", "prefix_lookup_tokens", "role", "runs",
                 "timeline")

    def __init__(self, idx: int, role: str) -> None:
        self.idx, self.role = idx, role
        self.busy_s = 0.0
        self.preemptions = 0
        self.prefix_hit_tokens = 0  # prompt tokens served from the replica's prefix cache
        self.prefix_lookup_tokens = 0  # prompt tokens of the admissions that looked them up
        self.timeline = Column()
        self.gaps = Column()  # (gap, weight) pairs
        self.runs = Column()  # RUN_FIELDS per piece

    def run_gaps(self, pieces: Iterable[tuple[int, int, float, float]], k: int, seqs: int) -> None:
        """Gaps of steps 1..k-1 of a decode run of ``seqs`` sequences whose step j takes a + b j on the envelope
        piece [s, e) holding j (step 0's gap, measured from before the run, is stored in ``gaps``)."""
        runs = self.runs.items
        for s, e, a, b in pieces:
            if s < 1:
                s = 1
            if e > k:
                e = k
            if e > s:
                runs += (a, b, s, e, seqs)

    def spill(self) -> None:
        """Move long columns to float64 blocks. The replica calls it when a request joins its decoding set (a
        prefill replica: at each prompt step) and its timeline holds more than BLOCK values: every column grows by
        a few values per request, so none holds more than a few BLOCKs of Python floats."""
        self.timeline.spill()
        self.gaps.spill()
        self.runs.spill()

    def timeline_array(self) -> np.ndarray:
        return self.timeline.array().reshape(-1, len(TIMELINE))

    def gap_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        g = self.gaps.array().reshape(-1, 2)
        return g[:, 0], g[:, 1]

    def run_array(self) -> np.ndarray:
        return self.runs.array().reshape(-1, len(RUN_FIELDS))


__all__ = ["BLOCK", "RUN_FIELDS", "TIMELINE", "Column", "ReplicaRecord"]
