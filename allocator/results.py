"""Solve results: status, figures, tidy schedule frames, export and re-reading.

The frames are the contract with the verifier, the report and sweeps; see
docs/schedule-format.md for every file and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pandas as pd


class Status(str, Enum):
    """Outcome of a solve (our own, independent of the solver's codes)."""

    OPTIMAL = "optimal"  # proven within the requested gap
    FEASIBLE = "feasible"  # a schedule, stopped by a limit, with its gap
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    NO_SOLUTION = "no_solution"  # stopped by a limit before any schedule was found
    ERROR = "error"

    @property
    def has_schedule(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


COST_TERMS: tuple[str, ...] = (
    "reserved_lease",
    "ondemand_lease",
    "energy",
    "egress",
    "site_extra",
    "tardiness",
    "unserved",
    "dropped_value",
    "carbon",
)


@dataclass(frozen=True)
class Result:
    """What a solve returns. Frames are empty when there is no schedule."""

    status: Status
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    costs: dict[str, float] = field(default_factory=dict)  # COST_TERMS -> $
    emissions_t: float | None = None
    build_s: float = 0.0
    solve_s: float = 0.0
    solver: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    explanation: list[str] = field(default_factory=list)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def total_cost(self) -> float | None:
        return sum(self.costs.values()) if self.costs else None
