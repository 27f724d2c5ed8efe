"""The formulation compiled once to standard form, with its columns and rows found by name.

``compile_model(model, objectives)`` runs Pyomo's ``LinearStandardFormCompiler`` (mixed form:
each row keeps its sense; columns in declaration order) over the active constraints with the
given objectives, and returns a ``CompiledModel``:

    arrays     A (scipy csc, m x n), c (n_obj x n, minimisation form), offset (n_obj,),
               col_lower, col_upper, row_lower, row_upper, integrality (1 = integer column)
    maps       cols(var): the column of every element of a Var component, in the order of
               its index set (-1 where the compiler left the element out because it is in no
               active row or objective); rows(constraint): the row of every element of a
               Constraint component, in its index order (-1: no row); keys(component): the
               index keys in that order; col_mask(*vars): a boolean mask of their columns
    decisions  decisions(x): the decision tables of allocator.outcome from a column vector
    starts     start_vector(plan): (columns, values) of the integer columns of a plan
    load       load(x): set the Pyomo variables from a column vector

Every solved model (the MIP of the mip route, its LP relaxation and duals, the sub-MIPs of
the neighbourhood search) is these arrays; there is no second builder of the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

INF = math.inf
KTOK = 1000.0  # serve is modelled in thousands of tokens/s (formulation.common.KTOK)


@dataclass
class CompiledModel:
    """minimise c[k] x + offset[k] s.t. row_lower <= A x <= row_upper, col_lower <= x <=
    col_upper, integrality; one row k of c per objective compiled (minimisation form)."""

    model: Any  # the Pyomo model compiled
    columns: list  # VarData per column
    row_entries: list  # RowEntry(constraint, bound_type) per row: 1 (<=), -1 (>=), 0 (==)
    objectives: list  # ObjectiveData per row of c
    c: np.ndarray  # dense (n_obj, n) in minimisation form
    offset: np.ndarray  # (n_obj,) constant terms, minimisation form
    senses: list[int]  # +1 minimise, -1 maximise, per objective
    A: Any  # scipy csc (m, n)
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    integrality: np.ndarray  # int32, 1 for integer/binary columns
    compile_s: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ shape

    @property
    def n(self) -> int:
        return len(self.columns)

    @property
    def m(self) -> int:
        return len(self.row_entries)

    @property
    def is_mip(self) -> bool:
        return bool(self.integrality.any())

    @property
    def shape(self) -> dict[str, int]:
        return {"variables": self.n, "constraints": self.m, "nonzeros": int(self.A.nnz)}

    # ------------------------------------------------------------------ maps

    def cols(self, name: str) -> np.ndarray:
        """Column of every element of Var ``name`` in its index order (-1: not a column);
        an empty array if the model has no such component."""
        key = ("cols", name)
        if key not in self._cache:
            if "col_of" not in self._cache:
                self._cache["col_of"] = {id(v): i for i, v in enumerate(self.columns)}
            col_of = self._cache["col_of"]
            var = self.model.component(name)
            self._cache[key] = np.zeros(0, dtype=np.int64) if var is None else np.fromiter(
                (col_of.get(id(v), -1) for v in var.values()), dtype=np.int64, count=len(var))
        return self._cache[key]

    def rows(self, name: str) -> np.ndarray:
        """Row of every element of Constraint ``name`` in its index order (-1: no row, e.g. a
        trivial one the compiler dropped; a ranged constraint's first row)."""
        key = ("rows", name)
        if key not in self._cache:
            if "row_of" not in self._cache:
                row_of: dict[int, int] = {}
                for i, r in enumerate(self.row_entries):
                    row_of.setdefault(id(r.constraint), i)
                self._cache["row_of"] = row_of
            row_of = self._cache["row_of"]
            con = self.model.component(name)
            self._cache[key] = np.zeros(0, dtype=np.int64) if con is None else np.fromiter(
                (row_of.get(id(c), -1) for c in con.values()), dtype=np.int64, count=len(con))
        return self._cache[key]

    def keys(self, name: str) -> list:
        """Index keys of component ``name`` in its index order ([] if there is none)."""
        comp = self.model.component(name)
        return [] if comp is None else list(comp.keys())

    def col_mask(self, *names: str) -> np.ndarray:
        """Boolean mask of the columns of the named Var components."""
        mask = np.zeros(self.n, dtype=bool)
        for name in names:
            c = self.cols(name)
            mask[c[c >= 0]] = True
        return mask

    def values(self, x: np.ndarray, name: str) -> np.ndarray:
        """Values of Var ``name``'s elements in its index order from column vector ``x`` (0
        for an element that is not a column)."""
        c = self.cols(name)
        if not len(c):
            return np.zeros(0)
        return np.where(c >= 0, np.asarray(x, dtype=float)[np.maximum(c, 0)], 0.0)

    # ------------------------------------------------------------------ plans

    def decisions(self, x: np.ndarray) -> dict[str, pd.DataFrame]:
        """The decision tables (training, inference_gpus, inference) of column vector ``x``."""
        index = self.model._index
        p = self.model._placements
        st = self.values(x, "start")
        on = np.flatnonzero(st > 0.5) if len(st) else np.zeros(0, dtype=np.int64)
        pl = p.iloc[on]
        training = pd.DataFrame({
            "job": pl["j"].astype(str).to_numpy(), "option": pl["o"].to_numpy(dtype=np.int64),
            "site": pl["s"].astype(str).to_numpy(), "gpu_type": pl["g"].astype(str).to_numpy(),
            "gpus": pl["gpus"].to_numpy(dtype=np.int64),
            "start_period": pl["t"].to_numpy(dtype=np.int64)})
        spr = index.service_periods
        gi = np.rint(self.values(x, "gpus_inf")).astype(np.int64)
        held = np.flatnonzero(gi > 0)
        inference_gpus = pd.DataFrame({
            "service": spr["v"].to_numpy()[held], "site": spr["s"].to_numpy()[held],
            "gpu_type": spr["g"].to_numpy()[held], "period": spr["t"].to_numpy(dtype=np.int64)[held],
            "gpus": gi[held]})
        sv = index.serve
        tok = self.values(x, "serve") * KTOK
        flow = np.flatnonzero(tok > 1e-6)
        inference = pd.DataFrame({
            "service": sv["v"].to_numpy()[flow], "region": sv["r"].to_numpy()[flow],
            "site": sv["s"].to_numpy()[flow], "gpu_type": sv["g"].to_numpy()[flow],
            "period": sv["t"].to_numpy(dtype=np.int64)[flow], "tokens_per_s": tok[flow]})
        return {"training": training, "inference_gpus": inference_gpus, "inference": inference}

    def start_vector(self, plan: dict[str, pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of the integer columns (starts, inference GPUs) of a plan given
        as decision tables (training, inference_gpus); every start and inference-GPU column
        is given (0 where the plan has none)."""
        model = self.model
        p = model._placements
        pos = {k: i for i, k in enumerate(zip(p["j"], p["o"], p["s"], p["t"], strict=True))}
        x = np.zeros(len(p))
        tr = plan["training"]
        for key in zip(tr["job"], tr["option"], tr["site"], tr["start_period"], strict=True):
            i = pos.get((str(key[0]), int(key[1]), str(key[2]), int(key[3])))
            if i is not None:
                x[i] = 1.0
        spr = model._index.service_periods
        spos = {k: i for i, k in enumerate(zip(spr["v"], spr["s"], spr["g"], spr["t"], strict=True))}
        gi = np.zeros(len(spr))
        ig = plan["inference_gpus"]
        for v, s, g, t, n in zip(ig["service"], ig["site"], ig["gpu_type"], ig["period"], ig["gpus"],
                                 strict=True):
            i = spos.get((str(v), str(s), str(g), int(t)))
            if i is not None:
                gi[i] = float(n)
        cs, ci = self.cols("start"), self.cols("gpus_inf")
        cols = np.concatenate([cs, ci])
        vals = np.concatenate([x[:len(cs)], gi[:len(ci)]])
        keep = cols >= 0
        return cols[keep].astype(np.int32), vals[keep]

    def load(self, x: np.ndarray) -> None:
        """Set every compiled variable from column values ``x`` (integers rounded)."""
        integ = self.integrality
        for i, (v, val) in enumerate(zip(self.columns, x, strict=True)):
            if integ[i]:
                val = float(round(val))
            v.set_value(float(val), skip_validation=True)


def compile_model(model, objectives: list | None = None) -> CompiledModel:
    """Compile the active constraints of ``model`` with ``objectives`` (default: its active
    ones) active, in that order; the objectives' activity is restored afterwards."""
    import pyomo.environ as pyo
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    from allocator.formulation.common import gc_paused

    t0 = time.perf_counter()
    if objectives is None:
        objectives = list(model.component_data_objects(pyo.Objective, active=True))
    was_active = {id(o): o.active for o in model.component_data_objects(pyo.Objective)}
    for o in model.component_data_objects(pyo.Objective, active=True):
        o.deactivate()
    for o in objectives:
        o.activate()
    try:
        with gc_paused():  # the compiler too makes an object per nonzero
            info = LinearStandardFormCompiler().write(model, mixed_form=True)
    finally:
        for o in model.component_data_objects(pyo.Objective):
            o.activate() if was_active[id(o)] else o.deactivate()
    cols = info.columns
    n = len(cols)
    lower = np.empty(n)
    upper = np.empty(n)
    integ = np.zeros(n, dtype=np.int32)
    for i, v in enumerate(cols):
        lb, ub = v.bounds
        lower[i] = -INF if lb is None else lb
        upper[i] = INF if ub is None else ub
        if v.is_integer():
            integ[i] = 1
    kinds = np.fromiter((r.bound_type for r in info.rows), dtype=np.int8, count=len(info.rows))
    rhs = np.asarray(info.rhs, dtype=float).reshape(-1)
    row_lower = np.where(kinds <= 0, rhs, -INF)
    row_upper = np.where(kinds >= 0, rhs, INF)
    c = info.c.toarray() if n else np.zeros((len(info.objectives), 0))
    offset = np.asarray(info.c_offset, dtype=float).reshape(-1)
    # the compiler lists objectives in model order; put them in the order asked for
    position = {id(o): i for i, o in enumerate(info.objectives)}
    order = [position[id(o)] for o in objectives]
    c, offset = c[order], offset[order]
    senses = [1 if o.sense == pyo.minimize else -1 for o in objectives]
    A = info.A.tocsc()
    A.sort_indices()
    return CompiledModel(
        model=model, columns=cols, row_entries=info.rows, objectives=list(objectives),
        c=np.asarray(c, dtype=float), offset=offset, senses=senses, A=A,
        col_lower=lower, col_upper=upper, row_lower=row_lower, row_upper=row_upper,
        integrality=integ, compile_s=time.perf_counter() - t0)
