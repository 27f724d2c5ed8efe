"""Eligibility: where and when a job or a service may run at all, the one home of each rule.

The index (``allocator.indexing``) applies these rules to build the sparse sets of the model;
the validator (``allocator.validate``) applies the same rules to tell a user, before any model
exists, that a mandatory job fits nowhere or a region is out of reach. A rule changed here is
changed for both. The formulation never re-checks them: a tuple the index leaves out simply
has no variable.

    pool type     an option of GPU type g can run only at a site with a pool of g
    residency     allowed_sites and allowed_zones (both, where given) restrict the sites
    gang fits     the whole gang fits the pool: gpus <= available
    window        a job occupies periods release .. end-1; a hard deadline ends it there
    power window  the gang's power fits the site's lowest ceiling over its run
    SLO           a region is served only from a site whose route is within latency_slo_ms

Functions take plain values or numpy arrays alike, so the index applies them to whole
columns and the validator to one case. This module imports neither Pyomo nor pandas.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-9  # tolerance of every comparison below (MW, ms): values read from text files


def site_allowed(item, site_id: str, zone: str) -> bool:
    """Residency: whether a job or service (``allowed_sites``, ``allowed_zones``) may use the
    site ``site_id`` in ``zone``."""
    if item.allowed_sites is not None and site_id not in item.allowed_sites:
        return False
    return not (item.allowed_zones is not None and zone not in item.allowed_zones)


def allowed_text(item) -> str:
    """The residency of ``item`` as a user wrote it: 'sites a, b / zones EU'."""
    parts = []
    if item.allowed_sites is not None:
        parts.append("sites " + ", ".join(item.allowed_sites))
    if item.allowed_zones is not None:
        parts.append("zones " + ", ".join(item.allowed_zones))
    return " / ".join(parts) or "sites"


def job_window(job, periods: int) -> tuple[int, int]:
    """[release, end): the periods a job may occupy; a hard deadline ends the window there,
    a soft one does not (running late is paid for instead)."""
    end = periods
    if job.deadline == "hard" and job.deadline_period is not None:
        end = min(end, job.deadline_period)
    return job.release_period, end


def gang_fits(gpus, available):
    """Gang fits: all ``gpus`` of an option at once within the pool's ``available``."""
    return available >= gpus


def window_min(values: np.ndarray, d: int) -> np.ndarray:
    """min(values[t:t+d]) for t = 0 .. len-d: the lowest ceiling a run of d periods started
    in t meets."""
    if d <= 1:
        return np.asarray(values, dtype=float).copy()
    if d > len(values):
        return np.empty(0, dtype=float)
    return np.lib.stride_tricks.sliding_window_view(np.asarray(values, dtype=float), d).min(axis=1)


def power_fits(need_mw, cap_mw):
    """Power window: a gang drawing ``need_mw`` fits a ceiling of ``cap_mw`` (the window
    minimum over its run)."""
    return need_mw <= cap_mw + EPS


def within_slo(latency_ms, slo_ms):
    """SLO: a route of ``latency_ms`` may serve a region of a service with ``slo_ms``."""
    return latency_ms <= slo_ms + EPS
