"""Hypothesis strategies: small random instances that are always valid.

Every mandatory job fits at least one site alone (GPUs, power, window), so instances are
feasible unless capacity is shared too tightly; the solver may still call some infeasible,
which the properties handle.
"""

from __future__ import annotations

from hypothesis import strategies as st

GPU_TYPES = [
    {"id": "H100", "power_kw": 1.0, "memory_gb": 80, "relative_throughput": 1.0},
    {"id": "H200", "power_kw": 1.1, "memory_gb": 141, "relative_throughput": 1.2},
]


@st.composite
def instances(draw, max_sites: int = 3, max_jobs: int = 4, max_periods: int = 6, services: bool = True):
    """A dict instance (for allocator.instance_from_dict)."""
    periods = draw(st.integers(3, max_periods))
    n_sites = draw(st.integers(1, max_sites))
    sites = []
    for i in range(n_sites):
        pools = []
        types = draw(st.lists(st.sampled_from(["H100", "H200"]), min_size=1, max_size=2, unique=True))
        for g in types:
            available = draw(st.integers(8, 64))
            reserved = draw(st.integers(0, available))
            pools.append(
                {
                    "gpu_type": g,
                    "available": available,
                    "reserved": reserved,
                    "reserved_price_usd_per_gpu_h": draw(st.sampled_from([0.0, 1.0, 2.0])),
                    "ondemand_price_usd_per_gpu_h": draw(st.sampled_from([1.5, 3.0, 5.0])),
                }
            )
        sites.append(
            {
                "id": f"s{i}",
                "provider": draw(st.sampled_from(["colossus", "aws", "gcp"])),
                "zone": draw(st.sampled_from(["US", "EU"])),
                "power_cap_mw": draw(st.sampled_from([0.05, 0.08, 0.2])),
                "pue": draw(st.sampled_from([1.1, 1.3])),
                "energy_price_usd_per_mwh": draw(st.sampled_from([0.0, 50.0, 90.0])),
                "carbon_g_per_kwh": draw(st.sampled_from([50.0, 400.0])),
                "pools": pools,
            }
        )
    jobs = []
    for j in range(draw(st.integers(1, max_jobs))):
        site = draw(st.sampled_from(sites))
        pool = draw(st.sampled_from(site["pools"]))
        gpus = draw(st.integers(1, pool["available"]))
        # keep the job within the site's power alone: gpus * kW * PUE / 1000 <= cap
        kw = next(g["power_kw"] for g in GPU_TYPES if g["id"] == pool["gpu_type"])
        max_gpus_power = int(site["power_cap_mw"] * 1000 / (kw * site["pue"]))
        gpus = max(1, min(gpus, max_gpus_power))
        dur = draw(st.integers(1, periods))
        mandatory = draw(st.booleans())
        job = {
            "id": f"j{j}",
            "options": [{"gpu_type": pool["gpu_type"], "gpus": gpus, "hours": float(dur)}],
            "mandatory": mandatory,
            "value_usd": 0.0 if mandatory else float(draw(st.integers(0, 500))),
        }
        if draw(st.booleans()):
            job["deadline_period"] = periods
        jobs.append(job)
    inst = {
        "name": "hyp",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": periods, "period_hours": 1.0},
        "gpu_types": GPU_TYPES,
        "sites": sites,
        "jobs": jobs,
    }
    if services and draw(st.booleans()):
        inst["regions"] = [{"id": "r0"}]
        inst["links"] = [
            {"a": s["id"], "b": "r0", "latency_ms": 10.0 if k == 0 else float(draw(st.integers(5, 60)))}
            for k, s in enumerate(sites)
        ]
        demand = [float(draw(st.integers(0, 20_000))) for _ in range(periods)]
        inst["services"] = [
            {
                "id": "v0",
                "tokens_per_s_per_gpu": {"H100": 1000.0, "H200": 1300.0},
                "latency_slo_ms": 40.0,
                "unserved_usd_per_mtok": draw(st.sampled_from([0.5, 5.0])),
                "demand": {"r0": demand},
            }
        ]
    return inst
