"""The mixed-integer model, one module per constraint family.

``FAMILIES`` is the registry, in build order; a family named in
``SolveOptions.disabled_families`` is skipped. ``build_model`` returns a plain
``pyo.ConcreteModel`` whose component names are the contract with solve, extraction, duals
and the golden LP tests (see docs/formulation.md).
"""

from __future__ import annotations

from collections.abc import Callable

import pyomo.environ as pyo

from allocator.formulation.budget import add_budget
from allocator.formulation.capacity import add_capacity
from allocator.formulation.common import gc_paused
from allocator.formulation.explain import explain_slacks
from allocator.formulation.inference import add_inference
from allocator.formulation.leasing import add_leasing
from allocator.formulation.network import add_network
from allocator.formulation.objective import add_objective
from allocator.formulation.power import add_power
from allocator.formulation.replanning import add_replanning
from allocator.formulation.training import add_training
from allocator.indexing import Index, usage_form
from allocator.options import SolveOptions
from allocator.schema import Instance

FAMILIES: list[tuple[str, Callable]] = [
    ("training", add_training),
    ("inference", add_inference),
    ("leasing", add_leasing),
    ("capacity", add_capacity),
    ("power", add_power),
    ("network", add_network),
    ("replanning", add_replanning),
    ("budget", add_budget),
    ("objective", add_objective),
]
FAMILY_NAMES: tuple[str, ...] = tuple(name for name, _ in FAMILIES)


class BuildTimeUp(Exception):  # noqa: N818 - a signal, not an error
    """The model build reached its deadline (build_model(deadline=...)) between families."""


def build_model(inst: Instance, index: Index, options: SolveOptions | None = None, *,
                elastic: bool = False, usage: str = "auto",
                unplaced_penalty: float | None = None,
                deadline: float | None = None) -> pyo.ConcreteModel:
    """Build the model of ``inst`` over the eligible tuples of ``index``.

    elastic=True adds penalised slack to the capacity, power, bandwidth, budget, mandatory
    assignment and hard-deadline rows (listed in ``model.SLACKS``) so that the model is
    always feasible and ``explain_slacks`` can say what cannot be met.
    usage: the form of the GPU-usage and staging-traffic totals, "expanded" (a start is a
    term of every period it runs in), "running" (running totals: a start is a term of two
    rows) or "auto" (running from ``RUNNING_FROM_TERMS`` expanded terms); see
    ``indexing.usage_form`` and docs/formulation.md.
    unplaced_penalty: a cost per mandatory job left unplaced (``training_unplaced`` in [0, 1]
    for every mandatory job): the neighbourhood search's model, in which any plan is
    feasible; None (the default) keeps every mandatory job required.
    deadline: a time.perf_counter() instant; past it, the build stops before the next family
    and raises BuildTimeUp (a time limit bounds the build too, to within one family).
    """
    import time

    options = options or SolveOptions()
    unknown = set(options.disabled_families) - set(FAMILY_NAMES)
    if unknown:
        raise ValueError(f"unknown constraint families {sorted(unknown)}; known: {', '.join(FAMILY_NAMES)}")
    model = pyo.ConcreteModel(name=inst.name)
    model.elastic = elastic
    model._usage = usage_form(index, usage)
    model._unplaced_penalty = unplaced_penalty
    model.SLACKS = []
    model._penalties = []
    model._placements = index.placements.iloc[0:0]
    model._unplaced_reasons = dict(index.unplaced)
    model._inst = inst
    model._index = index
    with gc_paused():
        for name, add in FAMILIES:
            if name in options.disabled_families:
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                raise BuildTimeUp(name)
            add(model, inst, index, options)
    return model


__all__ = ["FAMILIES", "FAMILY_NAMES", "BuildTimeUp", "build_model", "explain_slacks"]
