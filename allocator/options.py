"""Solve options: one frozen record passed explicitly from the CLI or API to every stage."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Objective = Literal["cost", "carbon", "carbon-then-cost", "cost-then-carbon"]
OBJECTIVES: tuple[str, ...] = ("cost", "carbon", "carbon-then-cost", "cost-then-carbon")

#: strategy "auto" picks lns from this estimated size of the compact model (nonzeros) up.
#: Measured (docs/performance.md): generated M (~130k) is solved better by HiGHS on the whole
#: model; at L (~0.9M) HiGHS finds no schedule in 120 s and lns does.
AUTO_LNS_NONZEROS = 500_000

#: strategy lns without a time limit stops its search after this many seconds
DEFAULT_LNS_LIMIT_S = 600.0


@dataclass(frozen=True)
class SolveOptions:
    """How to build and solve one instance.

    time_limit_s   wall-clock limit of the whole solve: index, greedy plan, model build, solver,
                   explanation (None = no limit; strategy lns then stops after
                   DEFAULT_LNS_LIMIT_S)
    mip_gap        relative gap at which HiGHS stops (0.0001 = 0.01%)
    threads        HiGHS threads (None = HiGHS default); fixed once per process by HiGHS
    seed           HiGHS random seed: same instance + seed -> same objective
    objective      cost | carbon | carbon-then-cost | cost-then-carbon
    lex_tolerance  lexicographic modes: the first objective may degrade by this fraction
    heuristic      None (MIP) or "greedy" (the greedy planner alone, no MIP)
    greedy_fallback  when a limit stops HiGHS with no schedule or (cost, carbon) a worse one
                   than the greedy planner's, return the greedy plan with HiGHS's bound
                   (``warm_start``, its former name, is accepted with a DeprecationWarning)
    duals          after the MIP, fix integers and report LP duals of capacity rows
    explain        on infeasibility, re-solve with penalised slack and explain
    disabled_families  constraint families switched off by name (see formulation.FAMILIES)
    max_nonzeros   refuse to build a model estimated above this many nonzeros
    strategy       "mip" (HiGHS on the whole model), "lns" (large instances: LP bound plus
                   fix-and-optimise on the compiled formulation, allocator.lns; cost only) or
                   "auto": lns for the cost objective when the compact model is estimated at
                   AUTO_LNS_NONZEROS or more, mip otherwise (the result's options record
                   which one ran)
    previous       re-planning: the plan being changed (a schedule folder, a Result or its
                   training DataFrame; see formulation/replanning.py); None = a fresh plan
    now            re-planning: jobs started before this period are frozen, and the periods
                   before it are the previous plan's
    max_moves      re-planning: at most this many jobs change site, GPU type or option
    max_moved_gpus re-planning: at most this many GPUs in moved jobs
    """

    time_limit_s: float | None = None
    mip_gap: float = 1e-4
    threads: int | None = None
    seed: int = 0
    objective: Objective = "cost"
    lex_tolerance: float = 1e-6
    heuristic: Literal["greedy"] | None = None
    greedy_fallback: bool = True
    duals: bool = False
    explain: bool = True
    disabled_families: tuple[str, ...] = field(default_factory=tuple)
    max_nonzeros: int = 60_000_000
    verbose: bool = False
    strategy: Literal["auto", "mip", "lns"] = "auto"
    previous: Any = None
    now: int = 0
    max_moves: int | None = None
    max_moved_gpus: int | None = None

    warm_start: bool | None = None  # deprecated name of greedy_fallback, kept one version

    def __post_init__(self) -> None:
        if self.warm_start is not None:
            warnings.warn("SolveOptions(warm_start=...) is deprecated: it is greedy_fallback "
                          "(the greedy plan as a fallback when a limit stops HiGHS)",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "greedy_fallback", bool(self.warm_start))
            object.__setattr__(self, "warm_start", None)

    def with_(self, **changes) -> SolveOptions:
        return replace(self, **changes)
