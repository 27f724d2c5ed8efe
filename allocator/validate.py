"""Cross-entity checks of an instance: every problem at once, each with where, what and a fix.

The schema (``allocator.schema``) checks each entity alone: types, signs, NaN and inf.
This module checks what needs the whole instance: references between entities, time series
lengths, windows, whether a mandatory job fits any site even alone, whether every region
with demand can be reached within its service's SLO, predecessor cycles, and numbers that
are legal but suspicious (warnings). It never imports Pyomo and never raises while looking;
``check`` raises ``InputError`` afterwards if any error was found.

Whether a job fits a site (pool type, residency, gang size, power over its window) and
whether a region is within reach (SLO) are decided by ``allocator.eligibility``, the rules the
index applies when it builds the model's sets: the validator only explains their verdict.
The checks are plain functions over one ``_Context``, run in the order of ``CHECKS``.

Every problem carries a ``rule`` name; ``RULES`` lists them all with their severity, and
docs/validation.md shows each one's message and fix.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from pydantic import BaseModel

from allocator.eligibility import (
    gang_fits,
    job_window,
    power_fits,
    site_allowed,
    window_min,
    within_slo,
)
from allocator.errors import InputError, Problem
from allocator.indexing import duration_periods
from allocator.io import load_instance, origin_of
from allocator.network import Network
from allocator.schema import RANGES, Instance, Site, TrainingJob, series_list

ERROR, WARNING = "error", "warning"

# rule name -> (severity, one-line meaning); the order is the order of docs/validation.md
RULES: dict[str, tuple[str, str]] = {
    "duplicate-id": (ERROR, "two entities of one kind share an id"),
    "duplicate-pool": (ERROR, "a site lists the same GPU type in two pools"),
    "unknown-gpu-type": (ERROR, "a pool, option or throughput names a GPU type not in gpu_types"),
    "unknown-site": (ERROR, "allowed_sites or site_cost_usd names a site not in sites"),
    "unknown-zone": (ERROR, "allowed_zones names a zone no site is in"),
    "unknown-data-source": (ERROR, "dataset_source names no data source"),
    "unknown-profile": (ERROR, "profile names no loaded AI model profile"),
    "unknown-predecessor": (ERROR, "predecessors names no job"),
    "unknown-region": (ERROR, "demand is given for a region not in regions"),
    "unknown-node": (ERROR, "a link endpoint is the node of no site, region or data source"),
    "series-length": (ERROR, "a per-period list does not have horizon.periods values"),
    "release-outside-horizon": (ERROR, "release_period is at or after the horizon end"),
    "deadline-outside-horizon": (ERROR, "deadline_period is after the horizon end"),
    "window-too-short": (ERROR, "a mandatory job cannot run between its release and deadline"),
    "profile-no-training": (ERROR, "a job relies on a profile that has no training data"),
    "profile-no-inference": (ERROR, "a service relies on a profile that has no inference data"),
    "profile-no-gpu-type": (ERROR, "a profile covers none of the instance's GPU types"),
    "residency": (ERROR, "allowed_sites and allowed_zones together leave no site"),
    "data-unreachable": (ERROR, "no route from a job's data source to any allowed site"),
    "job-fits-nowhere": (ERROR, "a mandatory job fits no site even alone (GPUs, power, window)"),
    "predecessor-cycle": (ERROR, "jobs wait on each other in a cycle"),
    "chain-too-long": (ERROR, "a mandatory job cannot meet its deadline after its predecessors"),
    "region-unreachable": (ERROR, "a region with demand has no allowed site within the SLO"),
    "region-no-gpu": (ERROR, "sites within the SLO have no GPU type the service runs on"),
    "budget-below-reserved": (ERROR, "budget_usd is below the reserved lease paid anyway"),
    "unknown-scenario": (ERROR, "a job's scenarios names no scenario of the instance"),
    "scenario-override": (ERROR, "a scenario's override names an unknown path or a refused value"),
    "scenario-invalid": (ERROR, "a scenario's own instance (overrides applied) has an error"),
    # warnings: legal and solvable, but probably not what was meant
    "optional-never-runs": (WARNING, "an optional job fits no site or window, so it never runs"),
    "reserved-price-zero": (WARNING, "reserved GPUs with a reserved price of 0"),
    "ondemand-cheaper": (WARNING, "on-demand price below the reserved price"),
    "ondemand-price-zero": (WARNING, "GPUs above the reserved block cost nothing"),
    "pue-high": (WARNING, "PUE above 2"),
    "power-cap-excess": (WARNING, "power ceiling far above what all the site's GPUs draw"),
    "power-cap-zero": (WARNING, "a site with GPUs but a power ceiling of 0 in every period"),
    "site-no-pools": (WARNING, "a site with no GPU pools"),
    "demand-zero-penalty": (WARNING, "a service with demand but no penalty for leaving it unserved"),
    "optional-zero-value": (WARNING, "an optional job worth 0, so it never pays to run it"),
    "soft-zero-tardiness": (WARNING, "a soft deadline with no tardiness penalty"),
    "always-late": (WARNING, "a soft deadline earlier than the job can possibly end"),
    "redundancy-one-site": (WARNING, "N+1 redundancy but only one site can serve a region"),
    "tokens-without-profile": (WARNING, "tokens_t given but no profile to use it"),
    "unit-suspect": (WARNING, "a value whose size suggests a different unit"),
    "value-unusual": (WARNING, "a value inside its range but above what is usual for the field"),
    "link-self-loop": (WARNING, "a link from a node to itself"),
    "duplicate-link": (WARNING, "two links between the same nodes (the faster is used)"),
    "node-shared": (WARNING, "entities of different kinds share one network node"),
}

# legal but unusual: above these a value draws a warning (the one range table, schema.RANGES)
USUAL = {name: r.usual for name, r in RANGES.items() if r.usual is not None}
# fields whose unusual values have a warning of their own, with a fix that names the likely unit
_TAILORED = {"power_kw", "reserved_price_usd_per_gpu_h", "ondemand_price_usd_per_gpu_h", "pue",
             "carbon_g_per_kwh", "latency_ms", "egress_usd_per_gb"}
POWER_EXCESS_FACTOR = 10.0  # warn when the ceiling exceeds this multiple of the full GPU draw


def validate(inst: Instance, origin: dict[tuple, str] | None = None) -> list[Problem]:
    """Every error and warning of ``inst``, errors first, in rule order.

    ``origin`` maps entity paths such as ``("jobs", 3)`` to ``"jobs.csv row 5"`` (the loader
    records it; see ``allocator.io.origin_of``) so problems name the CSV row they came from.
    """
    if origin is None:
        origin = origin_of(inst)
    cx = _Context(inst, origin or {})
    for check_one in CHECKS:
        check_one(cx)
    order = {name: i for i, name in enumerate(RULES)}
    return sorted(cx.problems, key=lambda p: (p.severity != ERROR, order.get(p.rule, len(order))))


def check(inst: Instance, source: str = "") -> list[Problem]:
    """Raise ``InputError`` with all errors if there is any; otherwise return the warnings."""
    problems = validate(inst)
    if any(p.severity == ERROR for p in problems):
        raise InputError(problems, source=source)
    return problems


def validate_path(path: str | Path, *, profiles_dir: str | Path | None = None
                  ) -> tuple[Instance | None, list[Problem]]:
    """Load and validate an instance file; never raises ``InputError``.

    Returns the instance (None if it could not be built) and every problem found: those of
    loading (files, YAML, CSV cells, schema) or, once it loads, those of ``validate``."""
    try:
        inst = load_instance(path, profiles_dir=profiles_dir)
    except InputError as exc:
        return None, list(exc.problems) + _salvaged_problems(getattr(exc, "partial", None))
    return inst, validate(inst)


# rules that judge references and single entities: still right when some entries that failed
# the schema are left out (fit, reach and warnings wait for a complete instance)
SALVAGE_RULES = {
    "duplicate-id", "duplicate-pool", "unknown-gpu-type", "unknown-site", "unknown-zone",
    "unknown-data-source", "unknown-profile", "unknown-predecessor", "unknown-region", "unknown-node",
    "series-length", "release-outside-horizon", "deadline-outside-horizon", "predecessor-cycle",
    "profile-no-training", "profile-no-inference", "profile-no-gpu-type",
}


def _salvaged_problems(partial) -> list[Problem]:
    """Cross-entity errors of the part of an instance that passed the schema, leaving out
    any that could come from an entry that was left out."""
    if partial is None:
        return []
    inst, dropped = partial
    gone = {i for ids in dropped.values() for i in ids}
    out = []
    for p in validate(inst):
        if p.severity != ERROR or p.rule not in SALVAGE_RULES:
            continue
        if p.id.split(" [")[0] in gone or any(f"'{g}'" in p.message for g in gone):
            continue
        if p.rule == "unknown-zone" and "sites" in dropped:
            continue  # the zone may belong to a site left out
        if p.rule == "unknown-node" and dropped.keys() & {"sites", "regions", "data_sources"}:
            continue
        out.append(p)
    return out


def load_checked(path: str | Path, *, profiles_dir: str | Path | None = None
                 ) -> tuple[Instance, list[Problem]]:
    """Load an instance and ``check`` it: the instance and its warnings, or ``InputError``."""
    inst = load_instance(path, profiles_dir=profiles_dir)
    return inst, check(inst, source=str(path))


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def warnings(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == WARNING]


def summary(inst: Instance) -> dict[str, Any]:
    """What the instance holds, as plain numbers (the table of ``allocator validate``)."""
    h = inst.horizon
    pools = [p for s in inst.sites for p in s.pools]
    cap = [max(series_list(s.ceiling_mw, h.periods), default=0.0) for s in inst.sites]  # max_mw if decided
    demand = 0.0
    for svc in inst.services:
        for series in svc.demand.values():
            demand += sum(series_list(series, h.periods))
    return {
        "name": inst.name,
        "start": h.start.isoformat(),
        "periods": h.periods,
        "period_hours": h.period_hours,
        "gpu_types": len(inst.gpu_types),
        "sites": len(inst.sites),
        "pools": len(pools),
        "gpus_available": sum(p.available for p in pools),
        "gpus_reserved": sum(p.reserved for p in pools),
        "power_cap_mw": sum(cap),
        "regions": len(inst.regions),
        "data_sources": len(inst.data_sources),
        "links": len(inst.links),
        "jobs": len(inst.jobs),
        "jobs_mandatory": sum(j.mandatory for j in inst.jobs),
        "jobs_optional": sum(not j.mandatory for j in inst.jobs),
        "services": len(inst.services),
        "demand_mtok": demand * 3600 * h.period_hours / 1e6,
        "profiles": len(inst.profiles),
    }


# --------------------------------------------------------------------------- the checks


def _fmt(x: float) -> str:
    """A number as a planner would write it: 12000, 2.5, 0.125, 1.2e+06."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def _names(items: Iterable[str], limit: int = 6) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _suggest(name: str, known: Iterable[str]) -> str:
    known = sorted(set(known))
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? known: {_names(known)}"
    return f"known: {_names(known)}" if known else "none is defined"


class _Context:
    """What every check needs: the instance, lookups by id, the problems found so far, and
    cached network distances and power ceilings."""

    def __init__(self, inst: Instance, origin: dict[tuple, str]):
        self.inst = inst
        self.origin = origin
        self.problems: list[Problem] = []
        self.T = inst.horizon.periods
        self.H = inst.horizon.period_hours
        self.gpu = {g.id: g for g in inst.gpu_types}
        self.sites = {s.id: s for s in inst.sites}
        self.jobs = {j.id: j for j in inst.jobs}
        self.regions = {r.id: r for r in inst.regions}
        self.data_sources = {d.id: d for d in inst.data_sources}
        self.profiles = {p.id: p for p in inst.profiles}
        self.zones = {s.zone for s in inst.sites if s.zone}
        self._net: Network | None = None
        self._caps: dict[str, np.ndarray] = {}
        self._rolling: dict[tuple[str, int], np.ndarray] = {}
        self._dist: dict[str, dict[str, float]] = {}


    def add(self, rule: str, entity: str, eid: str, message: str, fix: str = "", index: int | None = None,
            sub: tuple = ()) -> None:
        where = self._where(entity, index, sub)
        ident = f"{eid} [{where}]" if where else eid
        self.problems.append(Problem(entity, ident, message, fix, severity=RULES[rule][0], rule=rule))

    def _where(self, entity: str, index: int | None, sub: tuple) -> str:
        if index is None:
            return ""
        path = (entity, index, *sub)
        while len(path) >= 2:
            if path in self.origin:
                return self.origin[path]
            path = path[:-1]
        return ""

    @property
    def net(self) -> Network:
        if self._net is None:
            self._net = Network(self.inst)
        return self._net

    def latency_from(self, node: str) -> dict[str, float]:
        """Lowest latency (ms) from ``node`` to every node reachable from it (cached)."""
        if node not in self._dist:
            g = self.net.graph
            self._dist[node] = (nx.single_source_dijkstra_path_length(g, node, weight="latency_ms")
                                if node in g else {node: 0.0})
        return self._dist[node]

    def duration(self, hours: float) -> int:
        """Periods an option of ``hours`` occupies (the index's count, one tolerance)."""
        return duration_periods(hours, self.H)

    def caps(self, site: Site) -> np.ndarray:
        if site.id not in self._caps:
            vals = series_list(site.ceiling_mw, self.T)  # a decided ceiling: its largest option
            if len(vals) != self.T:  # wrong length is reported; use what is there, padded
                vals = (vals + [vals[-1] if vals else 0.0] * self.T)[: self.T]
            self._caps[site.id] = np.asarray(vals, dtype=float)
        return self._caps[site.id]

    def best_cap(self, site: Site, d: int, lo: int, hi: int) -> float:
        """Largest over starts t in [lo, hi] of the lowest ceiling during t .. t+d-1."""
        if hi < lo or d > self.T:
            return -math.inf
        key = (site.id, d)
        if key not in self._rolling:
            caps = self.caps(site)
            self._rolling[key] = window_min(caps, d)
        return float(self._rolling[key][lo : hi + 1].max())

    def window(self, job: TrainingJob) -> tuple[int, int]:
        """[release, end): the periods a job may occupy (eligibility.job_window)."""
        return job_window(job, self.T)

    def min_duration(self, job: TrainingJob) -> int | None:
        ds = [self.duration(o.hours) for o in job.options]
        return min(ds) if ds else None


    def _job_index(self, jid: str) -> int:
        return next(i for i, j in enumerate(self.inst.jobs) if j.id == jid)


def _check_ids(cx: _Context) -> None:
    for key in ("gpu_types", "sites", "regions", "data_sources", "jobs", "services", "profiles"):
        items = getattr(cx.inst, key)
        counts = Counter(x.id for x in items)
        for i, x in enumerate(items):
            if counts[x.id] > 1:
                first = next(k for k, y in enumerate(items) if y.id == x.id)
                if i != first:
                    cx.add("duplicate-id", key, x.id,
                           f"id {x.id!r} is used by {counts[x.id]} entries of {key} "
                           f"(#{first} and #{i})", "give each one its own id", index=i)
    for si, s in enumerate(cx.inst.sites):
        seen: set[str] = set()
        for pi, p in enumerate(s.pools):
            if p.gpu_type in seen:
                cx.add("duplicate-pool", "sites", s.id,
                       f"pools[{pi}].gpu_type: {p.gpu_type!r} already has a pool at this site",
                       "merge the two pools into one", index=si)
            seen.add(p.gpu_type)


def _check_gpu_types(cx: _Context) -> None:
    for g in cx.inst.gpu_types:
        if g.power_kw > USUAL["power_kw"]:
            cx.add("unit-suspect", "gpu_types", g.id,
                   f"power_kw: {_fmt(g.power_kw)} kW per GPU is more than any GPU draws",
                   "power_kw is in kW per GPU (a 700 W GPU is 0.7, about 1.0 with its server share)")
    for si, s in enumerate(cx.inst.sites):
        for pi, p in enumerate(s.pools):
            if p.gpu_type not in cx.gpu:
                cx.add("unknown-gpu-type", "sites", s.id,
                       f"pools[{pi}].gpu_type: {p.gpu_type!r} is not in gpu_types",
                       _suggest(p.gpu_type, cx.gpu), index=si)
    for ji, j in enumerate(cx.inst.jobs):
        for oi, o in enumerate(j.options):
            if o.gpu_type not in cx.gpu:
                cx.add("unknown-gpu-type", "jobs", j.id,
                       f"options[{oi}].gpu_type: {o.gpu_type!r} is not in gpu_types",
                       _suggest(o.gpu_type, cx.gpu), index=ji, sub=("options", oi))
    for vi, v in enumerate(cx.inst.services):
        for g in v.tokens_per_s_per_gpu:
            if g not in cx.gpu:
                cx.add("unknown-gpu-type", "services", v.id,
                       f"tokens_per_s_per_gpu: {g!r} is not in gpu_types",
                       _suggest(g, cx.gpu), index=vi)


def _check_sites(cx: _Context) -> None:
    for si, s in enumerate(cx.inst.sites):
        if not s.pools:
            cx.add("site-no-pools", "sites", s.id, "pools: none, so nothing can run here",
                   "add pools or remove the site", index=si)
        if s.pue > USUAL["pue"]:
            cx.add("pue-high", "sites", s.id, f"pue: {_fmt(s.pue)} is above {_fmt(USUAL['pue'])}",
                   "check it: modern data centers run at 1.1 to 1.6", index=si)
        for pi, p in enumerate(s.pools):
            tag = f"pools[{pi}] ({p.gpu_type})"
            if p.reserved > 0 and p.reserved_price_usd_per_gpu_h == 0:
                cx.add("reserved-price-zero", "sites", s.id,
                       f"{tag}: {p.reserved} reserved GPUs at reserved_price_usd_per_gpu_h 0",
                       "set the reserved price, or 0 reserved if they are not paid for",
                       index=si)
            if p.reserved > 0 and p.ondemand_price_usd_per_gpu_h < p.reserved_price_usd_per_gpu_h:
                cx.add("ondemand-cheaper", "sites", s.id,
                       f"{tag}: ondemand_price_usd_per_gpu_h {_fmt(p.ondemand_price_usd_per_gpu_h)}"
                       f" is below reserved_price_usd_per_gpu_h {_fmt(p.reserved_price_usd_per_gpu_h)}",
                       "check the two prices: a reservation is normally the cheaper rate",
                       index=si)
            if p.available > p.reserved and p.ondemand_price_usd_per_gpu_h == 0:
                cx.add("ondemand-price-zero", "sites", s.id,
                       f"{tag}: {p.available - p.reserved} on-demand GPUs at "
                       "ondemand_price_usd_per_gpu_h 0", "set the on-demand price", index=si)
            for name, price in (("reserved_price_usd_per_gpu_h", p.reserved_price_usd_per_gpu_h),
                                ("ondemand_price_usd_per_gpu_h", p.ondemand_price_usd_per_gpu_h)):
                if price > USUAL[name]:
                    cx.add("unit-suspect", "sites", s.id,
                           f"{tag}.{name}: {_fmt(price)} $ per GPU-hour is far above any list price",
                           "the price is per GPU and per hour (divide a node price by its GPUs)",
                           index=si)
        draw = sum(p.available * cx.gpu[p.gpu_type].power_kw for p in s.pools
                   if p.gpu_type in cx.gpu) * s.pue / 1000
        caps = cx.caps(s)
        if s.pools and draw > 0 and caps.max() <= 0:
            cx.add("power-cap-zero", "sites", s.id,
                   "power_cap_mw: 0 in every period, so no GPU here can run",
                   "give the site's power ceiling in MW", index=si)
        elif draw > 0 and caps.max() > POWER_EXCESS_FACTOR * draw:
            cx.add("power-cap-excess", "sites", s.id,
                   f"power_cap_mw: {_fmt(caps.max())} MW is over {POWER_EXCESS_FACTOR:g}x what all "
                   f"its GPUs draw ({draw:.3g} MW with PUE)",
                   "check the unit (MW, not kW) or whether pools are missing", index=si)
        _unit_series(cx, si, s, "energy_price_usd_per_mwh", s.energy_price_usd_per_mwh,
                     0 < _mean(s.energy_price_usd_per_mwh) < 1,
                     "looks like $/kWh; the field is $/MWh (multiply by 1000)")
        _unit_series(cx, si, s, "carbon_g_per_kwh", s.carbon_g_per_kwh,
                     0 < _mean(s.carbon_g_per_kwh) < 1,
                     "looks like kg/kWh; the field is gCO2/kWh (multiply by 1000)")
        _unit_series(cx, si, s, "carbon_g_per_kwh", s.carbon_g_per_kwh,
                     _mean(s.carbon_g_per_kwh) > USUAL["carbon_g_per_kwh"],
                     "is above any grid's intensity; the field is gCO2/kWh")


def _unit_series(cx: _Context, si: int, s: Site, name: str, value, cond: bool, fix: str) -> None:
    if cond:
        cx.add("unit-suspect", "sites", s.id, f"{name}: mean {_mean(value):.4g}", fix, index=si)


def _check_network(cx: _Context) -> None:
    kinds: dict[str, set[str]] = defaultdict(set)
    for s in cx.inst.sites:
        kinds[s.node_id].add("site")
    for r in cx.inst.regions:
        kinds[r.node_id].add("region")
    for d in cx.inst.data_sources:
        kinds[d.node_id].add("data source")
    for node, ks in kinds.items():
        if len(ks) > 1:
            cx.add("node-shared", "network", node,
                   f"node {node!r} is shared by a {' and a '.join(sorted(ks))}, so the latency "
                   "between them is 0", "give them distinct ids or node names")
    pairs: Counter = Counter()
    for li, link in enumerate(cx.inst.links):
        lid = f"{link.a}-{link.b}"
        for end in ("a", "b"):
            node = getattr(link, end)
            if node not in kinds:
                cx.add("unknown-node", "links", lid,
                       f"{end}: {node!r} is the node of no site, region or data source",
                       _suggest(node, kinds), index=li)
        if link.a == link.b:
            cx.add("link-self-loop", "links", lid, f"a and b are both {link.a!r}",
                   "remove the link", index=li)
        pairs[frozenset((link.a, link.b))] += 1
        if pairs[frozenset((link.a, link.b))] == 2:
            cx.add("duplicate-link", "links", lid,
                   "a second link between the same two nodes; only the lower latency one is used",
                   "keep one link per pair of nodes", index=li)
        if link.latency_ms > USUAL["latency_ms"]:
            cx.add("unit-suspect", "links", lid,
                   f"latency_ms: {_fmt(link.latency_ms)} ms is more than a round trip around the world",
                   "latency is in milliseconds", index=li)
        if link.egress_usd_per_gb > USUAL["egress_usd_per_gb"]:
            cx.add("unit-suspect", "links", lid,
                   f"egress_usd_per_gb: {_fmt(link.egress_usd_per_gb)} $/GB is far above cloud "
                   "egress prices (0.01 to 0.12)", "the price is per GB", index=li)


def _check_series(cx: _Context) -> None:
    T = cx.T
    for si, s in enumerate(cx.inst.sites):
        for name in ("power_cap_mw", "energy_price_usd_per_mwh", "carbon_g_per_kwh"):
            val = getattr(s, name)
            if isinstance(val, list) and len(val) != T:
                cx.add("series-length", "sites", s.id,
                       f"{name}: {len(val)} values but the horizon has {T} periods",
                       f"give one value or exactly {T} (one per period)", index=si, sub=(name,))
    for vi, v in enumerate(cx.inst.services):
        for r, val in v.demand.items():
            if isinstance(val, list) and len(val) != T:
                cx.add("series-length", "services", v.id,
                       f"demand.{r}: {len(val)} values but the horizon has {T} periods",
                       f"give one value or exactly {T} (one per period)", index=vi)


def _check_profiles(cx: _Context) -> None:
    for ji, j in enumerate(cx.inst.jobs):
        if j.tokens_t is not None and not j.profile:
            cx.add("tokens-without-profile", "jobs", j.id,
                   f"tokens_t: {_fmt(j.tokens_t)} is ignored without a profile",
                   "name the AI model profile, or drop tokens_t", index=ji)
        if not j.profile:
            continue
        prof = cx.profiles.get(j.profile)
        if prof is None:
            cx.add("unknown-profile", "jobs", j.id, f"profile: {j.profile!r} was not found",
                   "add models/<profile>.yaml or fix the name; "
                   + _suggest(j.profile, cx.profiles), index=ji)
        elif not j.options and prof.training is None:
            cx.add("profile-no-training", "jobs", j.id,
                   f"profile: {j.profile!r} has no training section to derive options from",
                   "add training data to the profile or give options", index=ji)
        elif not j.options and prof.training is not None:
            cx.add("profile-no-gpu-type", "jobs", j.id,
                   f"profile: {j.profile!r} gives GPU counts for "
                   f"{_names(prof.training.gpus)} only, none of which is in gpu_types",
                   "add one of those GPU types, or give options", index=ji)
    for vi, v in enumerate(cx.inst.services):
        if not v.profile:
            continue
        prof = cx.profiles.get(v.profile)
        if prof is None:
            cx.add("unknown-profile", "services", v.id, f"profile: {v.profile!r} was not found",
                   "add models/<profile>.yaml or fix the name; "
                   + _suggest(v.profile, cx.profiles), index=vi)
        elif not v.tokens_per_s_per_gpu and prof.inference is None:
            cx.add("profile-no-inference", "services", v.id,
                   f"profile: {v.profile!r} has no inference section to derive throughput from",
                   "add inference data to the profile or give tokens_per_s_per_gpu", index=vi)
        elif not v.tokens_per_s_per_gpu and prof.inference is not None:
            cx.add("profile-no-gpu-type", "services", v.id,
                   f"profile: {v.profile!r} gives throughput for "
                   f"{_names(prof.inference.tokens_per_s_per_gpu)} only, none of which is in gpu_types",
                   "add one of those GPU types, or give tokens_per_s_per_gpu", index=vi)


def _allowed_sites(cx: _Context, entity: str, index: int, item) -> tuple[list[Site], bool]:
    """Sites an entity may use and whether its allowed lists reference unknown names."""
    unknown = False
    sites = list(cx.inst.sites)
    if item.allowed_sites is not None:
        for name in item.allowed_sites:
            if name not in cx.sites:
                unknown = True
                cx.add("unknown-site", entity, item.id,
                       f"allowed_sites: {name!r} is not in sites", _suggest(name, cx.sites),
                       index=index)
    if item.allowed_zones is not None:
        for z in item.allowed_zones:
            if z not in cx.zones:
                unknown = True
                cx.add("unknown-zone", entity, item.id,
                       f"allowed_zones: {z!r} is the zone of no site", _suggest(z, cx.zones),
                       index=index)
    sites = [s for s in sites if site_allowed(item, s.id, s.zone)]
    if not sites and not unknown and (item.allowed_sites is not None or item.allowed_zones is not None):
        cx.add("residency", entity, item.id,
               f"allowed_sites {item.allowed_sites} and allowed_zones {item.allowed_zones} "
               "leave no site", "allow a site in one of the allowed zones", index=index)
    return sites, unknown


def _check_jobs(cx: _Context) -> None:
    T = cx.T
    for ji, j in enumerate(cx.inst.jobs):
        for name in j.site_cost_usd:
            if name not in cx.sites:
                cx.add("unknown-site", "jobs", j.id, f"site_cost_usd: {name!r} is not in sites",
                       _suggest(name, cx.sites), index=ji)
        if j.dataset_source is not None and j.dataset_source not in cx.data_sources:
            cx.add("unknown-data-source", "jobs", j.id,
                   f"dataset_source: {j.dataset_source!r} is not in data_sources",
                   _suggest(j.dataset_source, cx.data_sources), index=ji)
        if j.mandatory is False and j.value_usd == 0:
            cx.add("optional-zero-value", "jobs", j.id,
                   "value_usd: 0 for an optional job, so running it never pays",
                   "give the value earned if it runs, or make it mandatory", index=ji)
        if j.deadline == "soft" and j.tardiness_usd_per_h == 0:
            cx.add("soft-zero-tardiness", "jobs", j.id,
                   "tardiness_usd_per_h: 0 with a soft deadline, so the deadline has no effect",
                   "set the penalty per hour late, or drop deadline_period", index=ji)
        sites, unknown = _allowed_sites(cx, "jobs", ji, j)
        window_ok = True
        if j.release_period >= T:
            window_ok = False
            cx.add("release-outside-horizon", "jobs", j.id,
                   f"release_period: {j.release_period} is not before the horizon end ({T} periods)",
                   f"use a release_period below {T}, or lengthen the horizon", index=ji)
        if j.deadline_period is not None and j.deadline_period > T:
            window_ok = False
            cx.add("deadline-outside-horizon", "jobs", j.id,
                   f"deadline_period: {j.deadline_period} is after the horizon end ({T} periods)",
                   f"use a deadline_period of at most {T} (jobs end within the horizon), "
                   "or lengthen the horizon", index=ji)
        dmin = cx.min_duration(j)
        if not window_ok or dmin is None:
            continue
        lo, hi = cx.window(j)
        severity_rule = "window-too-short" if j.mandatory else "optional-never-runs"
        if lo + dmin > hi:
            which = "deadline_period" if hi < T else "horizon end"
            cx.add(severity_rule, "jobs", j.id,
                   f"release_period {lo} + shortest run {dmin} periods ends at {lo + dmin}, "
                   f"after its {which} ({hi})",
                   "release it earlier, move the deadline, or add a faster option", index=ji)
            continue
        if j.deadline == "soft" and j.deadline_period is not None and lo + dmin > j.deadline_period:
            cx.add("always-late", "jobs", j.id,
                   f"deadline_period {j.deadline_period} is before the earliest possible end "
                   f"{lo + dmin}, so it is always late", "check the deadline", index=ji)
        if unknown or not sites:
            continue
        if j.dataset_source in cx.data_sources:
            reach = cx.latency_from(cx.data_sources[j.dataset_source].node_id)
            routed = [s for s in sites if s.node_id in reach]
            if not routed:
                cx.add("data-unreachable" if j.mandatory else "optional-never-runs", "jobs", j.id,
                       f"dataset_source: no route from {j.dataset_source!r} to any allowed site "
                       f"({_names(s.id for s in sites)})",
                       "add a link from the data source towards one of those sites", index=ji)
                continue
            sites = routed
        _check_fit(cx, ji, j, sites, lo, hi)


def _check_fit(cx: _Context, ji: int, j: TrainingJob, sites: list[Site], lo: int, hi: int) -> None:
    """Does some option fit some allowed site alone: GPUs, power in some window, time?"""
    reasons: list[str] = []
    kinds: set[str] = set()
    for oi, o in enumerate(j.options):
        g = cx.gpu.get(o.gpu_type)
        if g is None:
            return  # reported as unknown; do not guess
        d = cx.duration(o.hours)
        label = f"options[{oi}]" if len(j.options) > 1 else "it"
        if lo + d > hi:
            kinds.add("window")
            reasons.append(f"{label} takes {d} periods but only {hi - lo} fit between "
                           f"release {lo} and end {hi}")
            continue
        pooled = [(s, p) for s in sites for p in s.pools if p.gpu_type == o.gpu_type]
        if not pooled:
            kinds.add("gpus")
            reasons.append(f"{label} needs {o.gpus} {o.gpu_type} but no allowed site has {o.gpu_type}")
            continue
        big = [(s, p) for s, p in pooled if gang_fits(o.gpus, p.available)]
        if not big:
            most = max(pooled, key=lambda sp: sp[1].available)
            kinds.add("gpus")
            reasons.append(f"{label} needs {o.gpus} {o.gpu_type} but no allowed site offers more "
                           f"than {most[1].available} ({most[0].id})")
            continue
        best: tuple[float, Site, float, float] | None = None
        for s, _p in big:
            need = o.gpus * g.power_kw * s.pue / 1000
            cap = cx.best_cap(s, d, lo, hi - d)
            if power_fits(need, cap):
                return  # this option fits this site
            if best is None or cap - need > best[0]:
                best = (cap - need, s, need, cap)
        assert best is not None
        _, s, need, cap = best
        kinds.add("power")
        reasons.append(f"{label} needs {need:.4g} MW ({o.gpus} {o.gpu_type} x {_fmt(g.power_kw)} kW "
                       f"x PUE {_fmt(s.pue)}) but the best site, {s.id}, has at most {cap:.4g} MW "
                       f"for {d} periods in its window")
    if not reasons:
        return
    fixes = {"gpus": "add capacity or allow another GPU type or site",
             "power": "raise power_cap_mw or allow a site with more power",
             "window": "widen the release..deadline window or add a faster option"}
    rule = "job-fits-nowhere" if j.mandatory else "optional-never-runs"
    cx.add(rule, "jobs", j.id, "; ".join(reasons),
           "; or ".join(fixes[k] for k in ("gpus", "power", "window") if k in kinds), index=ji)


def _check_predecessors(cx: _Context) -> None:
    g = nx.DiGraph()
    for ji, j in enumerate(cx.inst.jobs):
        g.add_node(j.id)
        for p in j.predecessors:
            if p not in cx.jobs:
                cx.add("unknown-predecessor", "jobs", j.id, f"predecessors: {p!r} is not a job",
                       _suggest(p, cx.jobs), index=ji)
            else:
                g.add_edge(p, j.id)
    cyclic: set[str] = set()
    for comp in nx.strongly_connected_components(g):
        first = sorted(comp)[0]
        if len(comp) == 1 and not g.has_edge(first, first):
            continue
        cyclic |= comp
        cycle = nx.find_cycle(g.subgraph(comp), source=first)
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        cx.add("predecessor-cycle", "jobs", first,
               f"predecessors form a cycle: {path} (each waits for the one before)",
               "remove one of these predecessor links", index=cx._job_index(first))
    if cyclic:
        return
    # earliest end of every job, predecessors first; report mandatory jobs that miss their end
    ends: dict[str, int] = {}
    chain: dict[str, str | None] = {}
    for jid in nx.topological_sort(g):
        j = cx.jobs[jid]
        d = cx.min_duration(j)
        if d is None:
            continue
        start, via = j.release_period, None
        for p in j.predecessors:
            if ends.get(p, 0) > start:
                start, via = ends[p], p
        ends[jid], chain[jid] = start + d, via
        lo, hi = cx.window(j)
        if via is not None and j.mandatory and lo + d <= hi < start + d and hi <= cx.T:
            path, k = [jid], via
            while k is not None:
                path.append(k)
                k = chain.get(k)
            cx.add("chain-too-long", "jobs", jid,
                   f"after its predecessors ({' -> '.join(reversed(path))}) it cannot end "
                   f"before period {start + d}, after its end {hi}",
                   "move the deadline, release predecessors earlier, or shorten the chain",
                   index=cx._job_index(jid))


def _check_services(cx: _Context) -> None:
    for vi, v in enumerate(cx.inst.services):
        sites, unknown = _allowed_sites(cx, "services", vi, v)
        demanded = {r: val for r, val in v.demand.items() if max(series_list(val, cx.T), default=0) > 0}
        for r in v.demand:
            if r not in cx.regions:
                cx.add("unknown-region", "services", v.id, f"demand: region {r!r} is not in regions",
                       _suggest(r, cx.regions), index=vi)
        if demanded and v.unserved_usd_per_mtok == 0:
            cx.add("demand-zero-penalty", "services", v.id,
                   "unserved_usd_per_mtok: 0, so leaving all demand unserved costs nothing",
                   "set the penalty per unserved million tokens", index=vi)
        if unknown:
            continue
        for r in demanded:
            if r not in cx.regions:
                continue
            reach = cx.latency_from(cx.regions[r].node_id)
            lat = {s.id: reach.get(s.node_id, math.inf) for s in sites}
            near = [s for s in sites if within_slo(lat[s.id], v.latency_slo_ms)]
            if not near:
                if not sites:
                    continue  # residency already reported
                best = min(lat, key=lat.get)
                if math.isinf(lat[best]):
                    what, fix = "no allowed site has a route to it", "add a link from a site to the region"
                else:
                    what = f"the nearest allowed site, {best}, is {_fmt(lat[best])} ms away"
                    fix = (f"raise latency_slo_ms to at least {_fmt(lat[best])}, add a faster link, "
                           "or allow a closer site")
                cx.add("region-unreachable", "services", v.id,
                       f"demand.{r}: no site within latency_slo_ms {_fmt(v.latency_slo_ms)}; {what}",
                       fix, index=vi)
                continue
            serving = [s for s in near if any(p.gpu_type in v.tokens_per_s_per_gpu and p.available > 0
                                              for p in s.pools)]
            if not serving and v.tokens_per_s_per_gpu:
                cx.add("region-no-gpu", "services", v.id,
                       f"demand.{r}: the sites within the SLO ({_names(s.id for s in near)}) have no "
                       f"GPUs of a type it runs on ({_names(v.tokens_per_s_per_gpu)})",
                       "add a pool of such GPUs there, or throughput for their GPU type", index=vi)
            elif v.redundancy and len(serving) == 1:
                cx.add("redundancy-one-site", "services", v.id,
                       f"demand.{r}: redundancy is on but only {serving[0].id} can serve it within "
                       f"{_fmt(v.latency_slo_ms)} ms, and losing that site loses it all",
                       "allow a second site within the SLO, or turn redundancy off", index=vi)


def _check_budget(cx: _Context) -> None:
    if cx.inst.budget_usd is None:
        return
    fixed = sum(p.reserved * p.reserved_price_usd_per_gpu_h for s in cx.inst.sites for p in s.pools)
    fixed *= cx.H * cx.T
    # power ceilings are leased whether drawn: a fixed one in full, a decided one at least min_mw
    fixed += sum(sum(series_list(s.power_cap_mw, cx.T)) * s.power_price_usd_per_mw_h * cx.H
                 for s in cx.inst.sites if s.power_cap_mw is not None)
    fixed += sum(s.power_options.min_mw * s.power_options.price_usd_per_mw_h * cx.H * cx.T
                 for s in cx.inst.sites if s.power_options is not None)
    if fixed > cx.inst.budget_usd + 1e-6:
        cx.add("budget-below-reserved", "instance", cx.inst.name,
               f"budget_usd: {_fmt(cx.inst.budget_usd)} is below the reserved lease alone "
               f"({fixed:,.0f} $ over the horizon)", "raise the budget or reserve fewer GPUs")


def _check_scenarios(cx: _Context) -> None:
    """Scenario ids, the jobs' scenario lists, and each scenario's own instance (overrides
    applied), whose errors are reported with the scenario's name."""
    from allocator import leasing

    inst = cx.inst
    ids = [sc.id for sc in inst.scenarios]
    seen: set[str] = set()
    for k, sid in enumerate(ids):
        if sid in seen:
            cx.add("duplicate-id", "scenarios", sid, f"scenario id {sid!r} is used twice",
                   "give every scenario its own id", index=k)
        seen.add(sid)
    for ji, j in enumerate(inst.jobs):
        for sid in j.scenarios or []:
            if sid not in seen:
                cx.add("unknown-scenario", "jobs", j.id, f"scenarios: {sid!r} is no scenario of the instance",
                       _suggest(sid, ids) + "; use an id from the instance's scenarios list"
                       + ("" if ids else " (it has none: add scenarios, or drop the job's scenarios)"),
                       index=ji)
    if not inst.scenarios or any(p.severity == ERROR for p in cx.problems):
        return
    try:
        cases = leasing.scenario_cases(inst)
    except ValueError as exc:
        cx.add("scenario-override", "scenarios", "overrides", str(exc),
               "fix the path (the syntax of sweep specs, docs/sweeps.md) or the value")
        return
    for k, case in enumerate(cases):
        for p in validate(case.instance, {}):
            if p.severity == ERROR:
                cx.add("scenario-invalid", "scenarios", case.id, f"({p.entity}, {p.id}) {p.message}",
                       p.fix, index=k)


def _check_unusual(cx: _Context) -> None:
    """value-unusual: a field above the ``usual`` of its range (schema.RANGES), for the fields
    without a warning of their own; a series or mapping is judged by its largest value."""
    def largest(value) -> float | None:
        if isinstance(value, dict):
            value = [largest(v) for v in value.values()]
        if isinstance(value, list):
            vals = [v for v in (largest(v) for v in value) if v is not None]
            return max(vals, default=None)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def walk(model, entity: str, eid: str, index: int | None, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, list) and value and isinstance(value[0], BaseModel):
                for k, item in enumerate(value):
                    label = getattr(item, "id", None) or getattr(item, "gpu_type", None) or k
                    walk(item, entity, eid, index, f"{prefix}{name}[{label}].")
                continue
            if name in _TAILORED or name not in USUAL:
                continue
            top = largest(value)
            if top is not None and top > USUAL[name]:
                r = RANGES[name]
                cx.add("value-unusual", entity, eid,
                       f"{prefix}{name}: {_fmt(top)} {r.unit} is above the usual {_fmt(r.usual)}",
                       f"check the value and its unit; up to {_fmt(r.hi)} is accepted", index=index)

    walk(cx.inst.horizon, "horizon", "-", None, "")
    for key in ("gpu_types", "sites", "links", "jobs", "services"):
        for i, item in enumerate(getattr(cx.inst, key)):
            eid = getattr(item, "id", None) or f"{getattr(item, 'a', '')}-{getattr(item, 'b', '')}"
            walk(item, key, eid, i, "")
    top = cx.inst.carbon_price_usd_per_t
    if top > USUAL["carbon_price_usd_per_t"]:
        cx.add("value-unusual", "instance", cx.inst.name,
               f"carbon_price_usd_per_t: {_fmt(top)} $ per tCO2 is above the usual "
               f"{_fmt(USUAL['carbon_price_usd_per_t'])}", "check the value and its unit")


# the checks, in the order they run; each adds its problems to the context
CHECKS = (
    _check_ids,
    _check_gpu_types,
    _check_sites,
    _check_network,
    _check_series,
    _check_profiles,
    _check_jobs,
    _check_predecessors,
    _check_services,
    _check_budget,
    _check_scenarios,
    _check_unusual,
)


def _mean(value) -> float:
    if isinstance(value, list):
        return sum(value) / len(value) if value else 0.0
    return float(value)
