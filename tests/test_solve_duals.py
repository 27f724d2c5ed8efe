"""Marginal values (duals) of capacity rows on tiny instances worked out by hand."""

from __future__ import annotations

import pyomo.environ as pyo
import pytest

from allocator import instance_from_dict
from allocator.formulation import build_model
from allocator.indexing import build_index
from allocator.network import Network
from allocator.options import SolveOptions
from allocator.results import Status
from allocator.solve import dual_totals, lp_duals, solve_model


def serving(cap_a_mw: float = 0.008, avail_a: int = 16) -> dict:
    """One period of 2 h. Service chat needs 12,000 tokens/s in region r = 12 H100 at
    1,000 tokens/s each (1 kW per GPU, PUE 1). Site a leases GPUs at 2 $/GPU-h, site b at
    3 $/GPU-h; both reach r within the SLO; unserved demand costs far more than a GPU.
    With a's ceiling at 0.008 MW a holds 8 GPUs and b the other 4:
        cost = 8 x 2 x 2 + 4 x 3 x 2 = 32 + 24 = 56 $.
    One more MW at a would move GPUs from b to a, each saving (3 - 2) $/h per 0.001 MW:
        1 / 0.001 = 1,000 $ per MW-hour (valid while b still holds GPUs)."""
    pool = {"gpu_type": "H100", "reserved": 0}
    return {
        "name": "duals",
        "horizon": {"start": "2026-01-01T00:00:00Z", "periods": 1, "period_hours": 2.0},
        "gpu_types": [{"id": "H100", "power_kw": 1.0}],
        "sites": [
            {"id": "a", "provider": "colossus", "power_cap_mw": cap_a_mw,
             "pools": [pool | {"available": avail_a, "ondemand_price_usd_per_gpu_h": 2.0}]},
            {"id": "b", "provider": "aws", "power_cap_mw": 1.0,
             "pools": [pool | {"available": 16, "ondemand_price_usd_per_gpu_h": 3.0}]},
        ],
        "regions": [{"id": "r"}],
        "links": [{"a": "a", "b": "r", "latency_ms": 1}, {"a": "b", "b": "r", "latency_ms": 1}],
        "services": [{"id": "chat", "tokens_per_s_per_gpu": {"H100": 1000}, "latency_slo_ms": 10,
                      "bytes_per_token": 0, "unserved_usd_per_mtok": 1000,
                      "demand": {"r": 12000}}],
    }


def solved(d: dict):
    inst = instance_from_dict(d)
    model = build_model(inst, build_index(inst, Network(inst)), SolveOptions())
    out = solve_model(model)
    assert out.status is Status.OPTIMAL
    return model, out


def test_binding_power_ceiling_is_worth_the_cheaper_site():
    model, out = solved(serving(cap_a_mw=0.008))
    assert out.objective == pytest.approx(56.0)
    assert model.gpus_inf["chat", "a", "H100", 0].value == 8
    duals = lp_duals(model, period_hours=2.0)
    power = duals[(duals["kind"] == "power") & (duals["site"] == "a")]
    assert len(power) == 1
    assert power["marginal_usd_per_unit_h"].iloc[0] == pytest.approx(1000.0)
    slack = duals[(duals["kind"] == "power") & (duals["site"] == "b")]
    assert (slack["marginal_usd_per_unit_h"] == 0).all()
    # the same figure from two solves: 1 kW more at a saves 1,000 $/MWh x 0.001 MW x 2 h = 2 $
    _, more = solved(serving(cap_a_mw=0.009))
    assert out.objective - more.objective == pytest.approx(
        power["marginal_usd_per_unit_h"].iloc[0] * 0.001 * 2.0)
    totals = dual_totals(duals, period_hours=2.0)
    row = totals[(totals["kind"] == "power") & (totals["site"] == "a")].iloc[0]
    assert row["total_usd_per_unit"] == pytest.approx(2000.0)  # 1,000 $/MWh x 2 h x 1 period
    assert row["binding_periods"] == 1
    # the plan in the model is untouched and nothing stays fixed
    assert model.gpus_inf["chat", "a", "H100", 0].value == 8
    assert not any(v.fixed for v in model.component_data_objects(pyo.Var))


def test_binding_gpu_pool_is_worth_the_price_difference_per_gpu_hour():
    """Site a has power for everything but 12 GPUs, shared by a training job (4 GPUs for the
    whole 2 h period; at b it would cost 100 $ more, so it runs at a) and the 12 inference
    GPUs of chat. a keeps 4 + 8, b holds 4:
        cost = (4 + 8) x 2 x 2 + 4 x 3 x 2 = 48 + 24 = 72 $.
    One more GPU at a moves one inference GPU from b: 3 - 2 = 1 $ per GPU-hour."""
    d = serving(cap_a_mw=1.0, avail_a=12)
    d["jobs"] = [{"id": "j", "options": [{"gpu_type": "H100", "gpus": 4, "hours": 2}],
                  "site_cost_usd": {"b": 100}}]
    model, out = solved(d)
    assert out.objective == pytest.approx(72.0)
    duals = lp_duals(model, period_hours=2.0)
    gpus = duals[(duals["kind"] == "gpus") & (duals["site"] == "a")]
    assert gpus["gpu_type"].tolist() == ["H100"]
    assert gpus["marginal_usd_per_unit_h"].iloc[0] == pytest.approx(1.0)
    assert (duals.loc[duals["kind"] == "power", "marginal_usd_per_unit_h"] == 0).all()


def test_fixing_every_integer_leaves_nothing_to_price():
    # with the GPU counts fixed too, the power row is a constant: its marginal value is 0
    model, _ = solved(serving(cap_a_mw=0.008))
    duals = lp_duals(model, period_hours=2.0, fix="integers")
    assert (duals["marginal_usd_per_unit_h"] == 0).all()


def test_bandwidth_duals_name_their_link_in_the_result_and_in_duals_csv(tmp_path):
    """As serving(), with 1,000 bytes per token and link 0 (a - r) limited to 0.064 Gb/s:
    8e-6 Gb/s per token/s, so a serves 8,000 tokens/s on 8 GPUs and b 4,000 on 4 (56 $ as
    before). One more Gb/s on link 0 moves 125,000 tokens/s from b to a, each saving
    (3 - 2) / 1000 $/h: 125 $ per Gbps-hour. Link 1 (b - r) has no limit and no row."""
    import allocator
    from allocator.results import read_schedule

    d = serving(cap_a_mw=1.0)
    d["links"][0]["bandwidth_gbps"] = 0.064
    d["services"][0]["bytes_per_token"] = 1000
    inst = instance_from_dict(d)
    model, out = solved(d)
    assert out.objective == pytest.approx(56.0)
    direct = lp_duals(model, period_hours=2.0)
    bw = direct[direct["kind"] == "bandwidth"]
    assert bw["link"].tolist() == [0]
    assert bw["marginal_usd_per_unit_h"].iloc[0] == pytest.approx(125.0)
    result = allocator.solve(inst, duals=True)
    bw = result.frames["duals"][result.frames["duals"]["kind"] == "bandwidth"]
    assert bw["link"].tolist() == [0]
    assert bw["marginal_usd_per_unit_h"].iloc[0] == pytest.approx(125.0)
    back = read_schedule(result.export(tmp_path / "s"))
    csv_bw = back.frames["duals"][back.frames["duals"]["kind"] == "bandwidth"]
    assert csv_bw["link"].tolist() == [0]
    totals = dual_totals(bw, period_hours=2.0)
    assert totals["link"].tolist() == [0] and totals["total_usd_per_unit"].tolist() == pytest.approx([250.0])


def test_documented_dotted_dual_totals_works():
    import allocator
    import allocator.solve

    assert allocator.solve.dual_totals is dual_totals and allocator.solve.lp_duals is lp_duals
    assert allocator.dual_totals is dual_totals
