"""Write demand.csv and site_series.csv of the colossus-2026 instance.

Run from this folder: ``python make_series.py``. The output is deterministic; the shapes
and figures are documented in SOURCES.md.

- demand: tokens/s per (service, region, 4-hour period). Each region follows a stylized
  daily cycle in its local time: a night floor at 55% of the peak and a half-sine daytime
  bump from 07:00 to 21:00 peaking at 14:00, weekends at 85%; a period takes the mean of
  its hours.
- site_series: Colossus 1 energy price and grid carbon per period. The price has the TVA
  industrial mean (62.3 $/MWh) and the stylized US hour-of-day shape of electricity.csv
  (00-06h x0.8, 07-15h x1.0, 16-20h x1.5, 21-23h x0.9, normalised to a daily mean of 1) in
  Memphis local time; carbon has the TVA mean (339.89 gCO2/kWh) and the same shape at a
  quarter of its amplitude (gas peakers run in the evening).
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

# UTC offsets in August (daylight saving time)
REGION_UTC_OFFSET_H = {"users-us-east": -4, "users-us-central": -5, "users-us-west": -7, "users-eu": 2}
MEMPHIS_UTC_OFFSET_H = -5

# peak tokens/s per service and region (SOURCES.md, "Demand")
PEAK_TOKENS_PER_S = {
    "frontier-chat": {"users-us-east": 50e6, "users-us-central": 20e6, "users-us-west": 30e6, "users-eu": 25e6},
    "chat-70b": {"users-us-east": 34e6, "users-us-central": 13e6, "users-us-west": 21e6, "users-eu": 12e6},
    "code-assist": {"users-us-east": 9e6, "users-us-central": 4e6, "users-us-west": 6e6, "users-eu": 3e6},
    "chat-eu": {"users-eu": 4.5e6},
}
NIGHT_FLOOR = 0.55
WEEKEND = 0.85

TVA_INDUSTRIAL_USD_PER_MWH = 62.3
TVA_CARBON_G_PER_KWH = 339.89
CARBON_SHAPE_AMPLITUDE = 0.25


def demand_shape(local: datetime) -> float:
    """Fraction of the peak demand at a local time."""
    h = local.hour + local.minute / 60
    bump = math.sin(math.pi * (h - 7) / 14) if 7 <= h <= 21 else 0.0
    day = WEEKEND if local.weekday() >= 5 else 1.0
    return day * (NIGHT_FLOOR + (1 - NIGHT_FLOOR) * bump)


def price_multiplier(local_hour: int) -> float:
    """Stylized US ISO hour-of-day price multiplier (summer shape)."""
    if local_hour <= 6:
        return 0.8
    if local_hour <= 15:
        return 1.0
    if local_hour <= 20:
        return 1.5
    return 0.9


DAILY_MEAN_MULTIPLIER = sum(price_multiplier(h) for h in range(24)) / 24


def main() -> None:
    inst = yaml.safe_load((HERE / "instance.yaml").read_text())
    hz = inst["horizon"]
    start = datetime.fromisoformat(str(hz["start"]).replace("Z", "+00:00")).astimezone(UTC)
    periods, ph = int(hz["periods"]), float(hz["period_hours"])
    hours_per_period = int(ph)

    def hours_of(t: int) -> list[datetime]:
        base = start + timedelta(hours=t * ph)
        return [base + timedelta(hours=k + 0.5) for k in range(hours_per_period)]

    with open(HERE / "demand.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["service", "region", "period", "tokens_per_s"])
        for svc, peaks in PEAK_TOKENS_PER_S.items():
            for region, peak in peaks.items():
                off = timedelta(hours=REGION_UTC_OFFSET_H[region])
                for t in range(periods):
                    frac = sum(demand_shape(u + off) for u in hours_of(t)) / hours_per_period
                    w.writerow([svc, region, t, int(round(peak * frac, -3))])

    with open(HERE / "site_series.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["site", "period", "energy_price_usd_per_mwh", "carbon_g_per_kwh"])
        off = timedelta(hours=MEMPHIS_UTC_OFFSET_H)
        for t in range(periods):
            m = sum(price_multiplier((u + off).hour) for u in hours_of(t)) / hours_per_period
            rel = m / DAILY_MEAN_MULTIPLIER
            price = TVA_INDUSTRIAL_USD_PER_MWH * rel
            carbon = TVA_CARBON_G_PER_KWH * (1 + CARBON_SHAPE_AMPLITUDE * (rel - 1))
            w.writerow(["colossus-1", t, f"{price:.2f}", f"{carbon:.1f}"])


if __name__ == "__main__":
    main()
