"""Variants of this instance for docs/leasing.md, written beside it (the tables are shared).

    python what_if.py base-only            # -> instance-base-only.yaml: no scenarios
    python what_if.py fixed LEASES_CSV     # -> instance-fixed.yaml: the leases of LEASES_CSV
                                           #    fixed, over the three scenarios

base-only decides the leases on the base forecast alone (the scenarios dropped). fixed turns
every decision into an ordinary fixed lease, as a planner would write it after signing: a
pool with reserve_options gets ``reserved`` = its block and ``reserved_price_usd_per_gpu_h``
= the taken offer's price (no block: 0 and 0), the Colossus envelope becomes
``power_cap_mw`` = the leased MW with ``power_price_usd_per_mw_h`` = the option's price. Its
solve prices those leases over the scenarios: the expected cost of deciding on the base
forecast (the value of the stochastic solution is the difference to the three-scenario
solve). Edits are made on the YAML mapping; comments are not kept.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def load() -> dict:
    return yaml.safe_load((HERE / "instance.yaml").read_text())


def base_only(data: dict) -> dict:
    data.pop("scenarios", None)
    data["name"] = f"{data['name']}-base-only"
    return data


def fixed(data: dict, leases_csv: Path) -> dict:
    with open(leases_csv, newline="") as f:
        rows = {(r["site"], r["resource"]): r for r in csv.DictReader(f)}
    for site in data["sites"]:
        for pool in site.get("pools", []):
            offers = pool.pop("reserve_options", None)
            if offers is None:
                continue
            r = rows[(site["id"], pool["gpu_type"])]
            size = int(float(r["size"]))
            price = next((o["price_usd_per_gpu_h"] for o in offers if o["term"] == r["term"]), 0.0)
            pool["reserved"] = size
            pool["reserved_price_usd_per_gpu_h"] = price if size else 0.0
        option = site.pop("power_options", None)
        if option is not None:
            site["power_cap_mw"] = float(rows[(site["id"], "power")]["size"])
            site["power_price_usd_per_mw_h"] = option["price_usd_per_mw_h"]
    data["name"] = f"{data['name']}-fixed"
    return data


def main(argv: list[str]) -> int:
    if argv[:1] == ["base-only"]:
        out, data = HERE / "instance-base-only.yaml", base_only(load())
    elif argv[:1] == ["fixed"] and len(argv) == 2:
        out, data = HERE / "instance-fixed.yaml", fixed(load(), Path(argv[1]))
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
