"""The shared quantities of a plan, each defined once: used by the index, the formulation, the
greedy planner and the derivation (allocator.verify keeps its own copies by design: it is the
independent check).

Units: GPUs, MW, periods of ``period_hours`` hours, tokens/s, Gb/s, GB, $ and t CO2.
"""

from __future__ import annotations

import math

#: rounding tolerance of every comparison of hours with whole periods
EPS = 1e-9
GB_PER_TB = 1000.0
GBIT_PER_TB = 8000.0
SECONDS_PER_HOUR = 3600.0


def duration_periods(hours: float, period_hours: float) -> int:
    """Periods an option of ``hours`` occupies: ceil(hours / H), tolerant to rounding."""
    return max(1, math.ceil(hours / period_hours - EPS))


def mw_per_gpu(power_kw: float, pue: float) -> float:
    """MW drawn from the grid per GPU of ``power_kw`` kW at a site of ``pue``."""
    return power_kw * pue / 1000.0


def staging_gbps(dataset_tb, periods, period_hours: float):
    """Gb/s that stage a dataset of ``dataset_tb`` TB evenly over ``periods`` periods."""
    return dataset_tb * GBIT_PER_TB / (periods * period_hours * SECONDS_PER_HOUR)


def staging_gb_per_period(dataset_tb, periods):
    """GB of a dataset staged in each of the ``periods`` periods a job runs."""
    return dataset_tb * GB_PER_TB / periods


def gbps_of_tokens(tokens_per_s, bytes_per_token):
    """Gb/s of inference traffic at ``tokens_per_s``."""
    return tokens_per_s * bytes_per_token * 8.0 / 1e9


def egress_gb_per_period(tokens_per_s, bytes_per_token, period_hours: float):
    """GB sent over one period of inference traffic at ``tokens_per_s``."""
    return tokens_per_s * bytes_per_token * SECONDS_PER_HOUR * period_hours / 1e9


def mtok_per_period(tokens_per_s, period_hours: float):
    """Millions of tokens in one period at ``tokens_per_s`` (what unserved demand is priced by)."""
    return tokens_per_s * SECONDS_PER_HOUR * period_hours / 1e6


def unserved_usd_per_token_s(unserved_usd_per_mtok, period_hours: float):
    """$ for one period of one token/s left unserved."""
    return mtok_per_period(unserved_usd_per_mtok, period_hours)


def ondemand_gpus(in_use, reserved):
    """GPUs rented on demand: those in use beyond the reserved block."""
    import numpy as np

    return np.maximum(0, in_use - reserved)


def energy_mwh(power_mw, period_hours: float):
    """MWh over one period at ``power_mw``."""
    return power_mw * period_hours


def emissions_t(energy, carbon_g_per_kwh):
    """t CO2 of ``energy`` MWh at ``carbon_g_per_kwh``."""
    return energy * carbon_g_per_kwh / 1000.0
