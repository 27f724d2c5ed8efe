"""What a strategy hands back to the pipeline: decisions, a bound and a status.

Every strategy (mip, lns, greedy) ends in an ``Outcome``. The pipeline, not the strategy,
derives the schedule tables and the cost breakdown from ``decisions`` and builds the one
Result, so that every route reports its plan the same way.

``decisions`` holds the decision tables, with the column names of docs/schedule-format.md:

    training        job, option, site, gpu_type, gpus, start_period
    inference_gpus  service, site, gpu_type, period, gpus
    inference       service, region, site, gpu_type, period, tokens_per_s

Everything else a schedule holds (usage, on-demand GPUs, power, energy, traffic, unserved
demand, costs) follows from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from allocator.results import Status

DECISION_TABLES: tuple[str, ...] = ("training", "inference_gpus", "inference")


@dataclass
class Outcome:
    """A strategy's answer. ``objective`` is the strategy's own value of its plan, kept for
    comparison only: the Result's objective is recomputed from ``decisions``."""

    status: Status
    decisions: dict[str, pd.DataFrame] | None = None
    bound: float | None = None
    objective: float | None = None
    solver: str = ""
    message: str = ""
    explanation: list[str] = field(default_factory=list)
    build_s: float = 0.0
    solve_s: float = 0.0
    stages: dict[str, Any] = field(default_factory=dict)  # the strategy's own log
