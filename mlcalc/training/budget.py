"""Where a training run stands against its step count and its wall-clock budget.

The schedules of a run (learning rate, loss-weight ramps) move with every optimiser step, by
whichever runs out first: the steps of ``epochs`` epochs or the ``max_time`` budget. The budget
covers training, the periodic validations and the final validation pass; the run stops at the
first step after which one more step, the validation row that closes the run and that final
pass would not fit.
"""

from __future__ import annotations

import statistics
import time
from collections import deque

import torch
import torch.distributed as dist

#: Optimiser steps between validations by default when an epoch is longer than this.
MAX_VALID_INTERVAL = 2000
#: Recent steps whose median predicts the next one (the first steps also compile).
RECENT_STEPS = 50
#: Cost of scoring a structure relative to a training step on it, before one was measured.
VALIDATION_PER_STEP = 0.5


def validation_subset(size: int, count: int, seed: int) -> list[int]:
    """A fixed, seeded choice of ``count`` of ``size`` validation structures (all of them when
    there are no more), in order."""
    if size <= count:
        return list(range(size))
    generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    return sorted(torch.randperm(size, generator=generator)[:count].tolist())


class Budget:
    """Elapsed seconds of a run (across resumes) and when it must stop.

    Args:
        seconds: the budget (``None``: none).
        elapsed: seconds spent before this process started (a resumed run).
        valid_structures: size of the full validation set, scored at the end.
        batch_size: structures per optimiser step.
    """

    def __init__(
        self, seconds: float | None, elapsed: float, valid_structures: int, batch_size: int
    ) -> None:
        self.seconds = seconds
        self._before = elapsed
        self._start = time.perf_counter()
        self._steps: deque[float] = deque(maxlen=RECENT_STEPS)
        self._valid_structures = valid_structures
        self._batch_size = max(1, batch_size)
        self._per_structure: float | None = None
        self._last_validation = 0.0
        self._compiling = 0.0  # seconds of steps that compiled, in this process

    def elapsed(self) -> float:
        """Seconds of the run so far."""
        return self._before + time.perf_counter() - self._start

    def fraction(self) -> float:
        """Part of the training time spent: of the budget less the final validation pass and
        less the steps that compiled, so that schedules start after compiling and end at the
        last step (0 without a budget, at most 1)."""
        if self.seconds is None:
            return 0.0
        training = max(self.seconds - self.final_pass() - self._compiling, 1e-9)
        return min(1.0, max(0.0, self.elapsed() - self._compiling) / training)

    def record_step(self, seconds: float, compiled: bool = False) -> None:
        """A step's seconds; one that ``compiled`` predicts nothing of the next steps, and its
        time is not training time for the schedules."""
        if compiled:
            self._compiling += seconds
        else:
            self._steps.append(seconds)

    def record_validation(self, seconds: float, structures: int) -> None:
        self._last_validation = seconds
        if structures:
            self._per_structure = seconds / structures

    def final_pass(self) -> float:
        """Predicted seconds of the final validation over the whole set."""
        if self._per_structure is not None:
            return self._per_structure * self._valid_structures
        step = statistics.median(self._steps) if self._steps else 0.0
        return VALIDATION_PER_STEP * step * self._valid_structures / self._batch_size

    def exhausted(self, shared_on: torch.device | None = None) -> bool:
        """Whether one more step, the periodic validation that ends the run and the final
        validation would overrun the budget. In a data-parallel run (``shared_on``: this
        process's device) all processes stop when one would overrun."""
        if self.seconds is None:
            return False
        step = statistics.median(self._steps) if self._steps else 0.0
        remaining = step + self._last_validation + self.final_pass()
        over = self.elapsed() + remaining > self.seconds
        if shared_on is not None:
            flag = torch.tensor(float(over), device=shared_on)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag.item())
        return over
