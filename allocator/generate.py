"""Seeded synthetic instances of any size, with realistic proportions, for tests and benchmarks.

``generate_instance(jobs, services, sites, periods, seed)`` returns an ``Instance`` built with
``numpy.random.default_rng(seed)``: the same arguments always give the same instance, on any
machine. Figures are drawn around the public ones shipped in data/ (GPU power and throughput,
cloud list prices, PUE, grid carbon, latency per km):

- GPU types H100, H200, B200, GB200 (server-level kW, relative throughput as data/colossus-2026).
- Sites: the first is a Colossus-style power lease (all GPUs reserved, energy billed per
  period, power ceiling below what all its GPUs draw, so power can bind); the others are
  cloud regions of AWS, Azure and GCP (and colocation campuses) in the US and EU, with
  reserved blocks plus on-demand headroom at list prices.
- Network: latency = great-circle distance x 0.022 ms/km + 2 ms; each site links to its
  nearest sites (plus a spanning tree, so everything is connected) and to the user regions
  within 80 ms; egress at inter-region and internet rates.
- Training jobs: gang sizes of 8-512 GPUs for most, a few of 1,024-4,096; durations of a few
  to a few dozen periods (median ~1/6 of min(48, periods/2)); release/deadline windows with
  20-100% slack over the duration (one job in ten open to the horizon end), as a planner would
  set them, which keeps the number of possible starts proportionate; ~15% optional with a
  value, ~5% soft deadlines, ~10% EU-resident, ~10% with a predecessor, ~40% pinned to 1-3
  sites (where their data or checkpoint is) and jobs with a soft or no deadline to 1-2.
- Inference services: tokens/s per GPU from the model profiles, a latency SLO, a daily demand
  cycle in each user region's local time; some with N+1 redundancy.
- GPU pools are sized so that training plus inference load them ~75% on average, and every
  mandatory job fits at least one allowed site alone (GPUs, power, residency, window), so
  generated instances always validate.

``write_instance(inst, out_dir)`` writes instance.yaml with the long tables as CSV files
(jobs.csv, links.csv, demand.csv, site_series.csv) that ``load_instance`` reads back equal.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import yaml

from allocator.errors import InputError, Problem
from allocator.schema import Instance

# Named sizes used by tests and benchmarks: jobs, services, sites, periods.
SIZES: dict[str, dict[str, int]] = {
    "S": {"jobs": 50, "services": 2, "sites": 4, "periods": 24},
    "M": {"jobs": 200, "services": 4, "sites": 8, "periods": 48},
    "L": {"jobs": 1000, "services": 6, "sites": 10, "periods": 168},
    "XL": {"jobs": 5000, "services": 10, "sites": 30, "periods": 336},
}

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
TARGET_LOAD = 0.75  # average share of GPUs busy
MS_PER_KM = 0.022  # P95 round trip per great-circle km, fitted to Azure US pairs
MAX_ACCESS_MS = 80.0

# id: (power_kw, memory_gb, relative_throughput) as in data/colossus-2026
GPU_TYPES: dict[str, tuple[float, float, float]] = {
    "H100": (1.0, 80.0, 1.0),
    "H200": (1.0, 141.0, 1.0),
    "B200": (1.43, 180.0, 2.27),
    "GB200": (1.72, 186.0, 2.53),
}
# on-demand list $/GPU-h ranges across AWS, Azure, GCP (shipped price table)
ONDEMAND_USD = {"H100": (6.88, 13.98), "H200": (7.91, 10.60), "B200": (11.28, 14.24), "GB200": (10.58, 10.58)}
# power-lease price per GPU-hour relative to H100 (colossus-2026 SOURCES.md)
LEASE_USD = {"H100": 1.60, "H200": 2.00, "B200": 3.10, "GB200": 3.44}

# tokens/s per GPU by model class (models/*.yaml)
THROUGHPUT = {
    "70b": {"H100": 2726.0, "H200": 3467.0, "B200": 12900.0, "GB200": 12000.0},
    "8b": {"H100": 12000.0, "H200": 15240.0, "B200": 56400.0, "GB200": 52800.0},
    "moe-37b": {"H100": 3094.0, "H200": 3930.0, "B200": 14544.0, "GB200": 13615.0},
    "frontier": {"H100": 572.0, "H200": 727.0, "B200": 2691.0, "GB200": 2519.0},
}


@dataclass(frozen=True)
class _Place:
    key: str
    provider: str
    region: str
    zone: str
    lat: float
    lon: float
    pue: float
    carbon: float  # gCO2/kWh
    energy: float  # $/MWh where billed separately, else 0
    types: tuple[str, ...]
    utc_offset_h: int


# Site templates from the shipped public figures (data/colossus-2026/SOURCES.md).
PLACES: list[_Place] = [
    _Place("colossus", "colossus", "memphis-tn", "US", 35.06, -90.15, 1.25, 339.89, 62.3, ("H100", "H200", "GB200"), -6),
    _Place("aws-use1", "aws", "us-east-1", "US", 39.04, -77.49, 1.15, 343.48, 0.0, ("H100", "H200", "B200"), -5),
    _Place("gcp-euw4", "gcp", "europe-west4", "EU", 53.43, 6.83, 1.09, 194.35, 0.0, ("H100", "H200"), 1),
    _Place("gcp-usc1", "gcp", "us-central1", "US", 41.26, -95.86, 1.09, 431.95, 0.0, ("H100", "H200", "B200"), -6),
    _Place("azure-wus3", "azure", "westus3", "US", 33.45, -112.07, 1.18, 360.0, 0.0, ("H200", "GB200"), -7),
    _Place("aws-eun1", "aws", "eu-north-1", "EU", 59.33, 18.06, 1.15, 19.39, 0.0, ("H100", "H200"), 1),
    _Place("aws-usw2", "aws", "us-west-2", "US", 45.84, -119.7, 1.15, 97.85, 0.0, ("H100", "H200", "B200"), -8),
    _Place("colo-dfw", "colo", "dallas-tx", "US", 32.78, -96.8, 1.3, 299.13, 66.0, ("H100", "B200", "GB200"), -6),
    _Place("azure-eus", "azure", "eastus", "US", 36.67, -78.39, 1.18, 343.48, 0.0, ("H100", "H200"), -5),
    _Place("azure-swc", "azure", "swedencentral", "EU", 60.67, 17.14, 1.18, 19.39, 0.0, ("H100", "GB200"), 1),
    _Place("gcp-use4", "gcp", "us-east4", "US", 39.04, -77.49, 1.09, 343.48, 0.0, ("H100", "H200", "B200"), -5),
    _Place("aws-use2", "aws", "us-east-2", "US", 39.96, -82.99, 1.15, 343.48, 0.0, ("H100", "H200", "B200"), -5),
    _Place("gcp-usw1", "gcp", "us-west1", "US", 45.6, -121.18, 1.09, 97.85, 0.0, ("H100", "H200"), -8),
    _Place("gcp-use5", "gcp", "us-east5", "US", 39.96, -82.99, 1.05, 343.48, 0.0, ("H100",), -5),
]
# user regions: id, zone, lat, lon, UTC offset (winter)
REGIONS = [
    ("users-us-east", "US", 40.7, -74.0, -5),
    ("users-us-central", "US", 41.9, -87.6, -6),
    ("users-us-west", "US", 37.8, -122.4, -8),
    ("users-eu", "EU", 52.4, 4.9, 1),
]
INTERNET_EGRESS_USD_PER_GB = {"aws": 0.09, "azure": 0.087, "gcp": 0.112, "colossus": 0.01, "colo": 0.01}
SLOS_MS = (30.0, 50.0, 80.0, 150.0)


# --------------------------------------------------------------------------- public API


def generate_instance(
    jobs: int,
    services: int,
    sites: int,
    periods: int,
    seed: int = 0,
    period_hours: float = 1.0,
) -> Instance:
    """A seeded synthetic instance that validates (see the module docstring)."""
    _check_args(jobs, services, sites, periods, period_hours)
    rng = np.random.default_rng(seed)
    places = _pick_places(sites, rng)
    zones = sorted({p.zone for p in places})
    job_list = _make_jobs(jobs, periods, period_hours, zones, places, rng)
    svc_list = _make_services(services, periods, period_hours, rng)
    site_list = _size_sites(places, job_list, svc_list, periods, period_hours, rng)
    links, regions_used = _make_links(places, rng)
    _fit_services(svc_list, places, links)
    _size_bandwidth(links, job_list, svc_list, period_hours)
    data: dict[str, Any] = {
        "name": f"synthetic-j{jobs}-v{services}-s{sites}-t{periods}-seed{seed}",
        "description": "synthetic instance from allocator.generate (realistic proportions, not real data)",
        "horizon": {"start": START, "periods": periods, "period_hours": float(period_hours)},
        "gpu_types": [
            {"id": g, "power_kw": kw, "memory_gb": mem, "relative_throughput": rel}
            for g, (kw, mem, rel) in GPU_TYPES.items()
        ],
        "sites": site_list,
        "regions": [{"id": r[0], "zone": r[1]} for r in REGIONS if r[0] in regions_used],
        "data_sources": [{"id": f"lake-{z.lower()}", "zone": z} for z in zones],
        "links": links,
        "jobs": [_public(j) for j in job_list],
        "services": [_public(s) for s in svc_list if s["demand"]],
    }
    return Instance.model_validate(data)


GENERATED_TABLES = ("jobs.csv", "links.csv", "demand.csv", "site_series.csv")


def write_instance(inst: Instance, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write instance.yaml plus jobs.csv, links.csv, demand.csv and site_series.csv."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError([Problem("file", str(out), "exists and is not a folder", "pass a folder for --out",
                                  rule="out-not-folder")])
    target = out / "instance.yaml"
    for name in ("instance.yaml", *GENERATED_TABLES):  # a user's own jobs.csv counts too
        if (out / name).exists() and not force:
            raise InputError([Problem("file", str(out / name), "already exists",
                                      "pass --force to overwrite it", rule="out-exists")])
    out.mkdir(parents=True, exist_ok=True)
    base = inst.model_dump(mode="json", exclude_defaults=True, exclude={"jobs", "links"})
    yaml_jobs = [j for j in inst.jobs if j.site_cost_usd]  # site_cost_usd has no CSV column
    if yaml_jobs:
        base["jobs"] = [j.model_dump(mode="json", exclude_defaults=True) for j in yaml_jobs]
    base["horizon"] = inst.horizon.model_dump(mode="json")
    for site, raw in zip(inst.sites, base["sites"], strict=True):
        for f in ("power_cap_mw", "energy_price_usd_per_mwh", "carbon_g_per_kwh"):
            if isinstance(getattr(site, f), list):
                raw.pop(f, None)
    for svc in base.get("services", []):
        svc.pop("demand", None)
    base["jobs_csv"] = "jobs.csv"
    base["links_csv"] = "links.csv"
    base["demand_csv"] = "demand.csv"
    base["site_series_csv"] = "site_series.csv"
    _write_text(target, "# synthetic instance written by allocator generate\n"
                + yaml.safe_dump(base, sort_keys=False, allow_unicode=True, width=100))
    _write_csv(out / "jobs.csv", _job_rows(inst))
    _write_csv(out / "links.csv", [["a", "b", "latency_ms", "bandwidth_gbps", "egress_usd_per_gb"]]
               + [[lk.a, lk.b, _num(lk.latency_ms), _num(lk.bandwidth_gbps), _num(lk.egress_usd_per_gb)]
                  for lk in inst.links])
    rows: list[list[Any]] = [["service", "region", "period", "tokens_per_s"]]
    for svc in inst.services:
        for region, series in svc.demand.items():
            vals = series if isinstance(series, list) else [series] * inst.horizon.periods
            rows.extend([svc.id, region, t, _num(v)] for t, v in enumerate(vals))
    _write_csv(out / "demand.csv", rows)
    rows = [["site", "period", "power_cap_mw", "energy_price_usd_per_mwh", "carbon_g_per_kwh"]]
    for site in inst.sites:
        fields = [site.power_cap_mw, site.energy_price_usd_per_mwh, site.carbon_g_per_kwh]
        if not any(isinstance(f, list) for f in fields):
            continue
        for t in range(inst.horizon.periods):
            rows.append([site.id, t] + [_num(f[t]) if isinstance(f, list) else "" for f in fields])
    _write_csv(out / "site_series.csv", rows)
    return target


# --------------------------------------------------------------------------- pieces


def _check_args(jobs: int, services: int, sites: int, periods: int, period_hours: float) -> None:
    problems = []
    for name, val, lo in (("jobs", jobs, 0), ("services", services, 0), ("sites", sites, 1), ("periods", periods, 2)):
        if not isinstance(val, int) or val < lo:
            problems.append(Problem("generate", name, f"{name} = {val!r}", f"use a whole number >= {lo}",
                                    rule="generate-arg"))
    if not (isinstance(period_hours, (int, float)) and math.isfinite(period_hours) and 0 < period_hours <= 24):
        problems.append(Problem("generate", "period_hours", f"period_hours = {period_hours!r}",
                                "use a number of hours in (0, 24]", rule="generate-arg"))
    if problems:
        raise InputError(problems, source="generate")


def _pick_places(n: int, rng: np.random.Generator) -> list[_Place]:
    """The first n site templates; beyond the list, copies nearby with a suffix."""
    out = []
    for i in range(n):
        p = PLACES[i % len(PLACES)]
        k = i // len(PLACES)
        if k:
            # a second campus of the same provider in the same metro area
            p = _Place(f"{p.key}-{k + 1}", p.provider, p.region, p.zone,
                       round(p.lat + float(rng.uniform(-1.5, 1.5)), 2), round(p.lon + float(rng.uniform(-1.5, 1.5)), 2),
                       p.pue, p.carbon, p.energy, p.types, p.utc_offset_h)
        out.append(p)
    return out


def _durations(n: int, periods: int, rng: np.random.Generator) -> np.ndarray:
    hi = max(2, min(48, periods // 2))
    d = np.exp(rng.normal(math.log(max(2.0, hi / 6)), 0.7, size=n))
    return np.clip(np.round(d), 2, hi).astype(int) if hi > 2 else np.full(n, min(2, periods), dtype=int)


def _make_jobs(n: int, periods: int, ph: float, zones: list[str], places: list[_Place],
               rng: np.random.Generator) -> list[dict]:
    """Training jobs; every random number is drawn up front (fast, and the draws of job i do not
    depend on the branches taken for earlier jobs)."""
    all_types = sorted({g for p in places for g in p.types})
    types_by_zone = {z: sorted({g for p in places if p.zone == z for g in p.types}) for z in zones}
    sizes = np.array([8, 16, 32, 64, 128, 256, 512])
    size_p = np.array([0.10, 0.10, 0.15, 0.20, 0.20, 0.15, 0.10])
    durs = _durations(n, periods, rng)
    small = rng.choice(sizes, size=n, p=size_p)
    large = rng.choice(np.array([1024, 2048, 4096]), size=n, p=[0.6, 0.3, 0.1])
    u = rng.random((n, 14))  # one row of uniforms per job, one column per decision
    jobs: list[dict] = []
    for i in range(n):
        r = u[i]
        gpus = int(large[i] if r[0] < 0.04 else small[i])
        d = int(min(durs[i], periods))
        zone_eu = "EU" in zones and r[1] < 0.10
        avail_types = types_by_zone["EU"] if zone_eu else all_types
        if "H100" in avail_types and r[2] < 0.6:
            base = "H100"
        else:
            base = avail_types[min(len(avail_types) - 1, int(r[3] * len(avail_types)))]
        base_hours = round(d * ph * (0.75 + 0.25 * r[4]), 3)
        base_rel = GPU_TYPES[base][2]
        work = gpus * base_hours * base_rel  # H100-equivalent GPU-hours
        others = [g for g in avail_types if g != base]
        k = min(len(others), int(r[5] * 3))  # 0, 1 or 2 alternative GPU types
        start = int(r[6] * len(others)) if others else 0
        chosen = [base] + [others[(start + m) % len(others)] for m in range(k)]
        options = []
        for g in chosen:
            rel = GPU_TYPES[g][2]
            n_g = gpus if g == base else max(8, int(round(gpus * base_rel / rel / 8)) * 8)
            hours = round(work / (n_g * rel), 3)
            if math.ceil(hours / ph - 1e-9) <= periods:  # the base option always fits
                options.append({"gpu_type": g, "gpus": n_g, "hours": hours})
        max_d = max(math.ceil(o["hours"] / ph - 1e-9) for o in options)
        slack = int(round(max_d * (0.2 + 0.8 * r[7]))) + 1
        release = int(r[8] * max(1, periods - max_d - slack + 1))
        deadline = min(periods, release + max_d + slack)
        release = min(release, deadline - max_d)
        mandatory = r[9] >= 0.15
        open_ended = r[10] >= 0.97 or (mandatory and r[10] < 0.05)
        job: dict[str, Any] = {
            "id": f"job-{i:05d}",
            "options": options,
            "release_period": int(release),
            "_d": max_d,
            "_zone": "EU" if zone_eu else None,
            # pinned to 1-3 sites; jobs that may end late or anywhere until the horizon end
            # (soft or no deadline) to 1-2, which keeps their many possible starts few
            "_pin": (1 + int(r[13] * 2), r[13]) if open_ended else (1 + int(r[13] * 3), r[13]) if r[12] < 0.4 else None,
        }
        if r[10] < 0.97:  # most jobs have a window; a few may run until the horizon end
            job["deadline_period"] = int(deadline)
            if mandatory and r[10] < 0.05:
                job["deadline"] = "soft"
                job["tardiness_usd_per_h"] = float(max(10.0, round(gpus * (2.0 + 8.0 * r[11]), -1)))
        if not mandatory:
            job["mandatory"] = False
            job["value_usd"] = float(max(100.0, round(work * (1.5 + 4.5 * r[11]), -2)))
        if zone_eu:
            job["allowed_zones"] = ["EU"]
        zone = "EU" if zone_eu else ("US" if "US" in zones else zones[0])
        job["dataset_source"] = f"lake-{zone.lower()}"
        # staged while the job runs, streaming at most ~5 Gb/s (5 x 3600 / 8000 TB per hour)
        min_d = min(math.ceil(o["hours"] / ph - 1e-9) for o in options)
        tb = min((0.5 + 49.5 * r[4]) * max(1.0, gpus / 512), 2.25 * min_d * ph)
        job["dataset_tb"] = float(max(0.1, math.floor(tb * 10) / 10))
        jobs.append(job)
    _add_predecessors(jobs, periods, rng)
    return jobs


def _add_predecessors(jobs: list[dict], periods: int, rng: np.random.Generator) -> None:
    """~10% of mandatory jobs follow an earlier mandatory job of the same zone. The successor's
    release moves to at least the predecessor's release plus its duration (and its deadline
    with it), so the chain fits its windows on its own."""
    for i, job in enumerate(jobs):
        if i == 0 or job.get("mandatory") is False or rng.random() >= 0.10:
            continue
        cands = [p for p in jobs[max(0, i - 50):i] if p.get("mandatory", True) and p["_zone"] == job["_zone"]
                 and p["release_period"] + p["_d"] + job["_d"] <= periods]
        if not cands:
            continue
        pred = cands[int(rng.integers(0, len(cands)))]
        job["release_period"] = max(job["release_period"], pred["release_period"] + pred["_d"])
        dl = job.get("deadline_period")
        if dl is not None and dl < job["release_period"] + job["_d"]:
            job["deadline_period"] = min(periods, job["release_period"] + job["_d"] + max(1, job["_d"] // 2))
        job["predecessors"] = [pred["id"]]


def _demand_shape(local_hour: float, weekday: int) -> float:
    """Share of the peak: 55% at night, half-sine bump 07:00-21:00 peaking 14:00, weekends 85%."""
    bump = math.sin(math.pi * (local_hour - 7) / 14) if 7 <= local_hour <= 21 else 0.0
    return (0.85 if weekday >= 5 else 1.0) * (0.55 + 0.45 * bump)


def _series(periods: int, ph: float, utc_offset_h: int, fn) -> list[float]:
    """Mean of fn(local hour, weekday) over the hours of each period."""
    out = []
    steps = max(1, int(math.ceil(ph)))
    for t in range(periods):
        acc = 0.0
        for k in range(steps):
            moment = START + timedelta(hours=t * ph + (k + 0.5) * ph / steps + utc_offset_h)
            acc += fn(moment.hour + moment.minute / 60, moment.weekday())
        out.append(acc / steps)
    return out


def _make_services(n: int, periods: int, ph: float, rng: np.random.Generator) -> list[dict]:
    classes = list(THROUGHPUT)
    out = []
    for i in range(n):
        cls = classes[i % len(classes)] if i < len(classes) else str(rng.choice(classes))
        slo = 150.0 if cls == "frontier" else float(rng.choice(SLOS_MS[:3]))
        share = {r[0]: float(rng.uniform(0.4, 1.0)) * (1.5 if r[0] == "users-us-east" else 1.0) for r in REGIONS}
        out.append({
            "id": f"svc-{cls}-{i:02d}",
            "tokens_per_s_per_gpu": dict(THROUGHPUT[cls]),
            "latency_slo_ms": slo,
            "bytes_per_token": 4.0,
            "redundancy": bool(rng.random() < 0.25),
            "unserved_usd_per_mtok": float(rng.choice([5.0, 10.0, 20.0, 30.0])),
            "_share": share,
            "_weight": float(rng.uniform(0.5, 1.5)),
            "demand": {},
        })
    return out


def _size_sites(places: list[_Place], jobs: list[dict], services: list[dict], periods: int, ph: float,
                rng: np.random.Generator) -> list[dict]:
    """Pools sized for ~75% average load; every mandatory job fits some allowed site alone and
    the mandatory jobs fit together (``_make_room``). Pools start at ~90% load because making
    room grows some of them; inference demand then fills the total to ~75%."""
    train_gpus = sum(j["options"][0]["gpus"] * j["_d"] for j in jobs) / periods  # mean GPUs busy
    infer_gpus = 0.67 * train_gpus if jobs else 2000.0 * len(services)
    capacity = max(512.0, (train_gpus + (infer_gpus if services else 0.0)) / 0.9)
    weights = np.array([4.0 if p.provider in ("colossus", "colo") else float(rng.uniform(0.6, 1.4)) for p in places])
    eu_train = sum(j["options"][0]["gpus"] * j["_d"] for j in jobs if j["_zone"] == "EU") / periods
    eu = np.array([p.zone == "EU" for p in places])
    if eu.any():  # EU sites hold at least what EU-resident work needs, plus EU inference
        need = (eu_train + 0.25 * (infer_gpus if services else 0.0)) / TARGET_LOAD
        have = capacity * weights[eu].sum() / weights.sum()
        if have < need:
            weights[eu] *= need / max(have, 1e-9)
    shares = capacity * weights / weights.sum()

    pools: list[dict[str, dict]] = []
    for p, cap in zip(places, shares, strict=True):
        split = rng.dirichlet(np.ones(len(p.types)) * 2.0)
        site_pools = {}
        for g, f in zip(p.types, split, strict=True):
            site_pools[g] = {"gpu_type": g, "available": max(64, int(round(cap * f / 8)) * 8)}
        pools.append(site_pools)

    # every job (mandatory or optional) fits some allowed site alone
    for j in jobs:
        allowed = [k for k, p in enumerate(places) if j["_zone"] is None or p.zone == j["_zone"]]
        if any(o["gpu_type"] in pools[k] and pools[k][o["gpu_type"]]["available"] >= o["gpus"]
               for k in allowed for o in j["options"]):
            continue
        o = j["options"][0]
        k = max(allowed, key=lambda k: (o["gpu_type"] in pools[k], pools[k].get(o["gpu_type"], {}).get("available", 0)))
        pool = pools[k].setdefault(o["gpu_type"], {"gpu_type": o["gpu_type"], "available": 0})
        pool["available"] = max(pool["available"], int(math.ceil(o["gpus"] / 8)) * 8)

    # drop options no allowed site can hold (kept only if no option of the job fits anywhere)
    for j in jobs:
        allowed = [k for k, p in enumerate(places) if j["_zone"] is None or p.zone == j["_zone"]]
        fits = [o for o in j["options"]
                if any(pools[k].get(o["gpu_type"], {}).get("available", 0) >= o["gpus"] for k in allowed)]
        if fits and len(fits) < len(j["options"]):
            j["options"] = fits
    # 40% of jobs are pinned to 1-3 sites (where their data or checkpoint is), among the
    # sites that can hold them alone
    for j in jobs:
        if j["_pin"] is None:
            continue
        k, frac = j["_pin"]
        fit_sites = [p.key for p, pl in zip(places, pools, strict=True)
                     if (j["_zone"] is None or p.zone == j["_zone"])
                     and any(pl.get(o["gpu_type"], {}).get("available", 0) >= o["gpus"] for o in j["options"])]
        if len(fit_sites) > k:
            first = int(frac * len(fit_sites) * 7919) % len(fit_sites)
            j["allowed_sites"] = sorted(fit_sites[(first + m) % len(fit_sites)] for m in range(k))
    plan_mw = _make_room(jobs, places, pools, periods, ph)
    sizes_by_type: dict[str, np.ndarray] = {}
    for g in GPU_TYPES:
        sizes_by_type[g] = np.unique([o["gpus"] for j in jobs for o in j["options"] if o["gpu_type"] == g])

    sites = []
    for p, site_pools in zip(places, pools, strict=True):
        lease = p.provider in ("colossus", "colo")
        out_pools = []
        for g, pool in site_pools.items():
            avail = pool["available"]
            if lease:
                price = round(LEASE_USD[g] * float(rng.uniform(0.9, 1.1)), 3)
                out_pools.append({"gpu_type": g, "available": avail, "reserved": avail,
                                  "reserved_price_usd_per_gpu_h": price, "ondemand_price_usd_per_gpu_h": price})
            else:
                lo, hi = ONDEMAND_USD[g]
                od = round(float(rng.uniform(lo, hi)), 3)
                reserved = int(round(avail * float(rng.uniform(0.0, 0.5)) / 8)) * 8
                rec = {"gpu_type": g, "available": avail, "reserved": reserved, "ondemand_price_usd_per_gpu_h": od}
                if reserved:
                    rec["reserved_price_usd_per_gpu_h"] = round(od * float(rng.uniform(0.55, 0.65)), 3)
                out_pools.append(rec)
        draw_mw = sum(pl["available"] * GPU_TYPES[pl["gpu_type"]][0] for pl in out_pools) * p.pue / 1000
        biggest_job_mw = max([gpus * GPU_TYPES[g][0] * p.pue / 1000 for g, pool in site_pools.items()
                              if (gpus := _largest_at_most(sizes_by_type.get(g), pool["available"]))] or [0.0])
        factor = float(rng.uniform(0.88, 0.97)) if lease else 1.02
        cap = max(draw_mw * factor, biggest_job_mw * 1.001, float(plan_mw.get(p.key, 0.0)) * p.pue * 1.001)
        site: dict[str, Any] = {
            "id": p.key,
            "provider": p.provider,
            "region": p.region,
            "zone": p.zone,
            "power_cap_mw": _ceil(cap, 3),
            "pue": p.pue,
            "pools": out_pools,
        }
        if lease:  # energy billed separately: hour-of-day price and carbon per period
            shape = _series(periods, ph, p.utc_offset_h, lambda h, wd: _price_mult(h))
            site["energy_price_usd_per_mwh"] = [round(p.energy * m / _PRICE_MEAN, 2) for m in shape]
            site["carbon_g_per_kwh"] = [round(p.carbon * (1 + 0.25 * (m / _PRICE_MEAN - 1)), 1) for m in shape]
        else:
            site["carbon_g_per_kwh"] = p.carbon
        sites.append(site)

    # inference demand: peak tokens/s per service and region for the inference GPU budget
    if services and jobs:
        total_gpus = sum(pl["available"] for site in sites for pl in site["pools"])
        infer_gpus = max(0.3 * train_gpus, TARGET_LOAD * total_gpus - train_gpus)
    if services:
        total_w = sum(s["_weight"] for s in services)
        for s in services:
            gpus = infer_gpus * s["_weight"] / total_w
            h100_rate = s["tokens_per_s_per_gpu"]["H100"]
            share_sum = sum(s["_share"].values())
            for rid, zone, _lat, _lon, off in REGIONS:
                if zone not in {p.zone for p in places}:
                    continue
                mean_tok = gpus * h100_rate * s["_share"][rid] / share_sum
                shape = _series(periods, ph, off, _demand_shape)
                peak = mean_tok / (sum(shape) / len(shape))
                s["demand"][rid] = [float(round(peak * f, -3)) for f in shape]
    return sites


def _make_room(jobs: list[dict], places: list[_Place], pools: list[dict[str, dict]], periods: int,
               ph: float) -> dict[str, float]:
    """Place the mandatory jobs greedily (earliest start, first option and site with room, in
    job order so predecessors come first) and grow a pool wherever a job finds no room, so
    the mandatory jobs fit together, not only each alone. Returns per site the peak IT MW of
    that plan (the power ceiling is raised to hold it)."""
    keys = {p.key: k for k, p in enumerate(places)}
    use = {(k, g): np.zeros(periods) for k, pl in enumerate(pools) for g in pl}
    ends: dict[str, int] = {}
    for j in jobs:
        if j.get("mandatory") is False:
            continue
        if j.get("allowed_sites"):
            allowed = [keys[s] for s in j["allowed_sites"]]
        else:
            allowed = [k for k, p in enumerate(places) if j["_zone"] is None or p.zone == j["_zone"]]
        opts = [(o, math.ceil(o["hours"] / ph - 1e-9)) for o in j["options"]]
        first = max([j["release_period"], *(ends[p] for p in j.get("predecessors", []) if p in ends)])
        if first + min(d for _, d in opts) > periods:  # the chain no longer fits: drop the link
            j.pop("predecessors", None)
            first = j["release_period"]
        hard = j.get("deadline_period") if j.get("deadline", "hard") == "hard" else None
        placed = None
        for t in range(first, periods):
            for o, d in opts:
                if t + d > periods or (hard is not None and t + d > hard):
                    continue
                for k in allowed:
                    u = use.get((k, o["gpu_type"]))
                    if u is not None and u[t:t + d].max() + o["gpus"] <= pools[k][o["gpu_type"]]["available"]:
                        placed = (k, o, d, t)
                        break
                if placed:
                    break
            if placed:
                break
        if placed is None:  # grow the largest pool of the first option's type among the allowed sites
            o, d = opts[0]
            t = min(first, periods - d)
            k = max(allowed, key=lambda k: pools[k].get(o["gpu_type"], {}).get("available", -1))
            pool = pools[k].setdefault(o["gpu_type"], {"gpu_type": o["gpu_type"], "available": 0})
            u = use.setdefault((k, o["gpu_type"]), np.zeros(periods))
            pool["available"] = max(pool["available"], int(math.ceil((u[t:t + d].max() + o["gpus"]) / 8)) * 8)
            if hard is not None and t + d > hard:
                j["deadline_period"] = t + d
            placed = (k, o, d, t)
        k, o, d, t = placed
        use[k, o["gpu_type"]][t:t + d] += o["gpus"]
        ends[j["id"]] = t + d
    peak: dict[str, float] = {}
    for k, p in enumerate(places):
        mw = sum(u * GPU_TYPES[g][0] for (kk, g), u in use.items() if kk == k) / 1000
        peak[p.key] = float(np.max(mw)) if isinstance(mw, np.ndarray) else 0.0
    return peak


def _largest_at_most(sorted_sizes: np.ndarray | None, limit: int) -> int:
    """Largest value of a sorted array that is <= limit (0 if none)."""
    if sorted_sizes is None or not len(sorted_sizes):
        return 0
    i = int(np.searchsorted(sorted_sizes, limit, side="right"))
    return int(sorted_sizes[i - 1]) if i else 0


def _price_mult(h: float) -> float:
    """Stylized US hour-of-day electricity price multiplier (shipped electricity figures)."""
    if h < 7:
        return 0.8
    if h < 16:
        return 1.0
    if h < 21:
        return 1.5
    return 0.9


_PRICE_MEAN = (7 * 0.8 + 9 * 1.0 + 5 * 1.5 + 3 * 0.9) / 24


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(a)))


def _latency(a: tuple[float, float], b: tuple[float, float]) -> float:
    return round(2.0 + MS_PER_KM * _km(*a, *b), 1)


def _make_links(places: list[_Place], rng: np.random.Generator) -> tuple[list[dict], set[str]]:
    zones = {p.zone for p in places}
    loc = {p.key: (p.lat, p.lon) for p in places}
    g = nx.Graph()
    for i, a in enumerate(places):
        for b in places[i + 1:]:
            g.add_edge(a.key, b.key, weight=_latency(loc[a.key], loc[b.key]))
    edges = set()
    if len(places) > 1:
        edges |= {tuple(sorted(e)) for e in nx.minimum_spanning_edges(g, data=False)}
        for a in places:
            near = sorted((g[a.key][b]["weight"], b) for b in g[a.key])[:3]
            edges |= {tuple(sorted((a.key, b))) for _, b in near}
    prov = {p.key: p for p in places}
    links = []
    for a, b in sorted(edges):
        same = prov[a].zone == prov[b].zone
        links.append({"a": a, "b": b, "latency_ms": g[a][b]["weight"], "bandwidth_gbps": 400.0,
                      "egress_usd_per_gb": 0.02 if same else 0.05})
    used = set()
    for rid, zone, lat, lon, _off in REGIONS:
        if zone not in zones:
            continue
        used.add(rid)
        lat_by_site = sorted((_latency((lat, lon), loc[p.key]), p.key) for p in places)
        chosen = [s for ms, s in lat_by_site if ms <= MAX_ACCESS_MS] or []
        chosen = list(dict.fromkeys(chosen + [s for _, s in lat_by_site[:2]]))
        for s in chosen:
            links.append({"a": s, "b": rid, "latency_ms": _latency((lat, lon), loc[s]), "bandwidth_gbps": 800.0,
                          "egress_usd_per_gb": INTERNET_EGRESS_USD_PER_GB[prov[s].provider]})
    for zone in sorted(zones):
        home = next(p for p in places if p.zone == zone and p.provider not in ("colossus", "colo")) \
            if any(p.zone == zone and p.provider not in ("colossus", "colo") for p in places) \
            else next(p for p in places if p.zone == zone)
        links.append({"a": f"lake-{zone.lower()}", "b": home.key, "latency_ms": 1.0, "bandwidth_gbps": 800.0,
                      "egress_usd_per_gb": 0.0})
    return links, used


def _size_bandwidth(links: list[dict], jobs: list[dict], services: list[dict], ph: float) -> None:
    """Links carry N x 400 Gb/s waves, at least as many as all staging and inference traffic
    could need at once (each flow crosses a link at most once), so bandwidth never makes a
    generated instance infeasible."""
    staging = sum(j["dataset_tb"] * 8000 / (min(math.ceil(o["hours"] / ph - 1e-9) for o in j["options"]) * ph * 3600)
                  for j in jobs if j.get("dataset_tb"))
    inference = sum(max(v) * s["bytes_per_token"] * 8 / 1e9 for s in services for v in s["demand"].values() if v)
    waves = math.ceil(1.1 * (staging + inference) / 400)
    for lk in links:
        lk["bandwidth_gbps"] = float(max(lk["bandwidth_gbps"], 400 * waves))


def _fit_services(services: list[dict], places: list[_Place], links: list[dict]) -> None:
    """Raise SLOs to reach at least one site per demanded region; keep N+1 only where two
    sites are within the SLO of every region the service serves."""
    g = nx.Graph()
    for lk in links:
        g.add_edge(lk["a"], lk["b"], weight=lk["latency_ms"])
    site_keys = [p.key for p in places]
    for s in services:
        best: dict[str, list[float]] = {}
        for rid in s["demand"]:
            dist = nx.single_source_dijkstra_path_length(g, rid, weight="weight")
            best[rid] = sorted(dist[k] for k in site_keys if k in dist)
        if not best:
            continue
        need = max(v[0] for v in best.values())
        if need > s["latency_slo_ms"]:
            s["latency_slo_ms"] = float(next((x for x in SLOS_MS if x >= need), math.ceil(need / 10) * 10))
        if s["redundancy"] and any(len(v) < 2 or v[1] > s["latency_slo_ms"] for v in best.values()):
            s["redundancy"] = False


def _public(j: dict) -> dict:
    return {k: v for k, v in j.items() if not k.startswith("_")}


def _ceil(x: float, digits: int) -> float:
    f = 10 ** digits
    return math.ceil(x * f - 1e-9) / f


# --------------------------------------------------------------------------- writing

JOB_COLUMNS = ["id", "profile", "tokens_t", "release_period", "deadline_period", "deadline", "tardiness_usd_per_h", "mandatory",
               "value_usd", "allowed_sites", "allowed_zones", "dataset_source", "dataset_tb", "predecessors",
               "gpu_type", "gpus", "hours"]


def _job_rows(inst: Instance) -> list[list[Any]]:
    rows: list[list[Any]] = [JOB_COLUMNS]
    for j in inst.jobs:
        if j.site_cost_usd:
            continue  # written under jobs: in instance.yaml
        head = [j.id, j.profile or "", _num(j.tokens_t), j.release_period, "" if j.deadline_period is None else j.deadline_period, j.deadline,
                _num(j.tardiness_usd_per_h), "true" if j.mandatory else "false", _num(j.value_usd),
                ";".join(j.allowed_sites or []), ";".join(j.allowed_zones or []), j.dataset_source or "",
                _num(j.dataset_tb), ";".join(j.predecessors)]
        for k, o in enumerate(j.options):
            rows.append((head if k == 0 else [j.id] + [""] * (len(head) - 1)) + [o.gpu_type, o.gpus, _num(o.hours)])
    return rows


def _num(v: float | int | None) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v)


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    tmp.replace(path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
