"""One malformed variant of the demo instance per validation rule.

Each case is (rule, mutation, expected text). The mutation edits the demo's YAML mapping in
place, as a planner editing the file would; the expected strings must all appear in the
output (entity and id, field, value). Used by tests/test_validate_rules.py (the API) and
tests/test_corpus.py (the CLI, exit codes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    rule: str
    mutate: Callable[[dict], None]
    expect: tuple[str, ...]
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.rule


def _job(d: dict, jid: str) -> dict:
    return next(j for j in d["jobs"] if j["id"] == jid)


def _site(d: dict, sid: str) -> dict:
    return next(s for s in d["sites"] if s["id"] == sid)


def _svc(d: dict, vid: str) -> dict:
    return next(s for s in d["services"] if s["id"] == vid)


def _set(getter, key, value):
    def f(d):
        getter(d)[key] = value

    return f


def _dup_id(d):
    _job(d, "eval-sweep")["id"] = "eu-finetune"


def _dup_pool(d):
    _site(d, "colossus-1")["pools"][1]["gpu_type"] = "H100"


def _unknown_gpu(d):
    _job(d, "pretrain-8b")["options"][0]["gpu_type"] = "H100X"


def _unknown_region(d):
    _svc(d, "code-8b")["demand"]["users-asia"] = 1000


def _unknown_node(d):
    d["links"][0]["b"] = "users-us-eats"


def _inline_profile(profile: dict, job: dict | None = None, service: dict | None = None):
    def f(d):
        d["profiles"] = [profile]
        if job:
            d["jobs"].append(job)
        if service:
            d["services"].append(service)

    return f


def _no_data_route(d):
    d["links"] = [link for link in d["links"] if link["a"] != "lake-eu"]


def _residency(d):
    _job(d, "eu-finetune")["allowed_sites"] = ["colossus-1"]


def _too_many_gpus(d):
    _job(d, "pretrain-8b")["options"] = [{"gpu_type": "H100", "gpus": 16384, "hours": 12}]


def _too_much_power(d):
    # 2048 H100 x 1.0 kW x PUE 1.25 / 1000 = 2.56 MW; only colossus-1 has 2048 H100 and its
    # ceiling is lowered to 2.0 MW
    _job(d, "pretrain-8b")["options"] = [{"gpu_type": "H100", "gpus": 2048, "hours": 12}]
    _site(d, "colossus-1")["power_cap_mw"] = 2.0


def _cycle(d):
    _job(d, "pretrain-8b")["predecessors"] = ["finetune-70b"]


def _chain(d):
    # pretrain-8b takes at least 12 periods, then eu-finetune 6: it ends at 18 > 15
    job = _job(d, "eu-finetune")
    job["predecessors"] = ["pretrain-8b"]
    job["deadline_period"] = 15


def _no_gpu_in_reach(d):
    # users-eu is reached within 30 ms only from gcp-euw4, which has H100 only
    _svc(d, "code-8b")["tokens_per_s_per_gpu"] = {"H200": 12000}


def _empty_site(d):
    d["sites"].append({"id": "empty-hall", "provider": "colossus", "power_cap_mw": 1.0})


def _self_loop(d):
    d["links"].append({"a": "aws-use1", "b": "aws-use1", "latency_ms": 0})


def _dup_link(d):
    d["links"].append(dict(d["links"][0], latency_ms=30))


def _shared_node(d):
    d["regions"].append({"id": "colossus-1", "zone": "US"})


def _optional_never(d):
    _job(d, "eval-sweep")["options"] = [{"gpu_type": "H100", "gpus": 99999, "hours": 4}]


TRAIN_ONLY = {"id": "train-only", "training": {"gpu_hours_h100": 1000, "reference_tokens_t": 1,
                                               "gpus": {"H100": 64}}}
SERVE_ONLY = {"id": "serve-only", "inference": {"tokens_per_s_per_gpu": {"H100": 100}}}
FUTURE_GPU = {"id": "future", "training": {"gpu_hours_h100": 1000, "reference_tokens_t": 1,
                                           "gpus": {"B300": 64}}}

def _scenarios(*extra: dict) -> list[dict]:
    return [{"id": "base", "probability": 0.5}, *extra]


def _unknown_scenario(d):
    d["scenarios"] = _scenarios({"id": "busy", "probability": 0.5})
    _job(d, "pretrain-8b")["scenarios"] = ["bsy"]


def _bad_override(d):
    d["scenarios"] = _scenarios({"id": "busy", "probability": 0.5,
                                 "overrides": [{"path": "services[*].demnd", "scale": 1.3}]})


def _scenario_breaks_a_rule(d):
    d["scenarios"] = _scenarios({"id": "late", "probability": 0.5, "overrides": [
        {"path": "jobs[eu-finetune].release_period", "value": 30}]})


CASES: list[Case] = [
    Case("duplicate-id", _dup_id, ("(jobs, eu-finetune)", "id 'eu-finetune' is used by 2")),
    Case("duplicate-pool", _dup_pool, ("(sites, colossus-1)", "pools[1].gpu_type: 'H100' already")),
    Case("unknown-gpu-type", _unknown_gpu,
         ("(jobs, pretrain-8b)", "options[0].gpu_type: 'H100X' is not in gpu_types", "did you mean 'H100'")),
    Case("unknown-site", _set(lambda d: _job(d, "eu-finetune"), "allowed_sites", ["gcp-euw5"]),
         ("(jobs, eu-finetune)", "allowed_sites: 'gcp-euw5'", "did you mean 'gcp-euw4'")),
    Case("unknown-zone", _set(lambda d: _job(d, "eu-finetune"), "allowed_zones", ["EUR"]),
         ("(jobs, eu-finetune)", "allowed_zones: 'EUR'")),
    Case("unknown-data-source", _set(lambda d: _job(d, "pretrain-8b"), "dataset_source", "lake-usa"),
         ("(jobs, pretrain-8b)", "dataset_source: 'lake-usa'", "did you mean 'lake-us'")),
    Case("unknown-profile", _set(lambda d: _job(d, "eval-sweep"), "profile", "llama-9000"),
         ("(jobs, eval-sweep)", "profile: 'llama-9000' was not found in models/", "llama-3.1-70b")),
    Case("unknown-predecessor", _set(lambda d: _job(d, "finetune-70b"), "predecessors", ["pretrain-9b"]),
         ("(jobs, finetune-70b)", "predecessors: 'pretrain-9b' is not a job", "did you mean 'pretrain-8b'")),
    Case("unknown-region", _unknown_region, ("(services, code-8b)", "demand: region 'users-asia'")),
    Case("unknown-node", _unknown_node,
         ("(links, colossus-1-users-us-eats)", "b: 'users-us-eats'", "did you mean 'users-us-east'")),
    Case("series-length", _set(lambda d: _site(d, "colossus-1"), "power_cap_mw", [3.0] * 23),
         ("(sites, colossus-1)", "power_cap_mw: 23 values but the horizon has 24 periods")),
    Case("release-outside-horizon", _set(lambda d: _job(d, "eu-finetune"), "release_period", 30),
         ("(jobs, eu-finetune)", "release_period: 30 is not before the horizon end (24 periods)")),
    Case("deadline-outside-horizon", _set(lambda d: _job(d, "pretrain-8b"), "deadline_period", 48),
         ("(jobs, pretrain-8b)", "deadline_period: 48 is after the horizon end (24 periods)")),
    Case("window-too-short", _set(lambda d: _job(d, "eu-finetune"), "release_period", 20),
         ("(jobs, eu-finetune)", "release_period 20 + shortest run 6 periods ends at 26")),
    Case("profile-no-training",
         _inline_profile(SERVE_ONLY, job={"id": "from-profile", "profile": "serve-only"}),
         ("(jobs, from-profile)", "profile: 'serve-only' has no training section")),
    Case("profile-no-inference",
         _inline_profile(TRAIN_ONLY, service={"id": "svc-profile", "profile": "train-only",
                                              "latency_slo_ms": 50, "unserved_usd_per_mtok": 1}),
         ("(services, svc-profile)", "profile: 'train-only' has no inference section")),
    Case("profile-no-gpu-type", _inline_profile(FUTURE_GPU, job={"id": "next-gen", "profile": "future"}),
         ("(jobs, next-gen)", "profile: 'future' gives GPU counts for B300 only")),
    Case("residency", _residency, ("(jobs, eu-finetune)", "allowed_sites ['colossus-1'] and allowed_zones ['EU']")),
    Case("data-unreachable", _no_data_route,
         ("(jobs, eu-finetune)", "dataset_source: no route from 'lake-eu' to any allowed site (gcp-euw4)")),
    Case("job-fits-nowhere", _too_many_gpus,
         ("(jobs, pretrain-8b)", "needs 16384 H100 but no allowed site offers more than 2048 (colossus-1)",
          "add capacity or allow another GPU type")),
    Case("job-fits-nowhere", _too_much_power,
         ("(jobs, pretrain-8b)", "needs 2.56 MW (2048 H100 x 1 kW x PUE 1.25)", "colossus-1, has at most 2 MW",
          "raise power_cap_mw"), name="job-fits-nowhere-power"),
    Case("predecessor-cycle", _cycle,
         ("(jobs, finetune-70b)", "predecessors form a cycle: finetune-70b -> pretrain-8b -> finetune-70b")),
    Case("chain-too-long", _chain,
         ("(jobs, eu-finetune)", "(pretrain-8b -> eu-finetune)", "cannot end before period 18, after its end 15")),
    Case("region-unreachable", _set(lambda d: _svc(d, "chat-70b"), "latency_slo_ms", 4),
         ("(services, chat-70b)", "demand.users-us-east: no site within latency_slo_ms 4",
          "the nearest allowed site, aws-use1, is 5 ms away", "raise latency_slo_ms to at least 5")),
    Case("region-no-gpu", _no_gpu_in_reach,
         ("(services, code-8b)", "demand.users-eu: the sites within the SLO (gcp-euw4) have no GPUs")),
    Case("budget-below-reserved", lambda d: d.__setitem__("budget_usd", 1000),
         ("(instance, demo)", "budget_usd: 1000 is below the reserved lease alone")),
    Case("unknown-scenario", _unknown_scenario,
         ("(jobs, pretrain-8b)", "scenarios: 'bsy' is no scenario of the instance", "did you mean 'busy'?")),
    Case("scenario-override", _bad_override,
         ("(scenarios, overrides)", "scenarios[1] (busy).overrides[0] services[*].demnd",
          "has no field 'demnd'")),
    Case("scenario-invalid", _scenario_breaks_a_rule,
         ("(scenarios, late)", "(jobs, eu-finetune) release_period: 30 is not before the horizon end")),
    # warnings
    Case("optional-never-runs", _optional_never, ("(jobs, eval-sweep)", "needs 99999 H100")),
    Case("reserved-price-zero",
         _set(lambda d: _site(d, "colossus-1")["pools"][0], "reserved_price_usd_per_gpu_h", 0),
         ("(sites, colossus-1)", "1536 reserved GPUs at reserved_price_usd_per_gpu_h 0")),
    Case("ondemand-cheaper",
         _set(lambda d: _site(d, "colossus-1")["pools"][0], "ondemand_price_usd_per_gpu_h", 1.0),
         ("(sites, colossus-1)", "ondemand_price_usd_per_gpu_h 1 is below reserved_price_usd_per_gpu_h 1.6")),
    Case("ondemand-price-zero",
         _set(lambda d: _site(d, "aws-use1")["pools"][1], "ondemand_price_usd_per_gpu_h", 0),
         ("(sites, aws-use1)", "512 on-demand GPUs at ondemand_price_usd_per_gpu_h 0")),
    Case("pue-high", _set(lambda d: _site(d, "colossus-1"), "pue", 2.5), ("(sites, colossus-1)", "pue: 2.5")),
    Case("power-cap-excess", _set(lambda d: _site(d, "colossus-1"), "power_cap_mw", 3000),
         ("(sites, colossus-1)", "power_cap_mw: 3000 MW is over 10x", "(MW, not kW)")),
    Case("power-cap-zero", _set(lambda d: _site(d, "aws-use1"), "power_cap_mw", 0),
         ("(sites, aws-use1)", "power_cap_mw: 0 in every period")),
    Case("site-no-pools", _empty_site, ("(sites, empty-hall)", "pools: none")),
    Case("demand-zero-penalty", _set(lambda d: _svc(d, "code-8b"), "unserved_usd_per_mtok", 0),
         ("(services, code-8b)", "unserved_usd_per_mtok: 0")),
    Case("optional-zero-value", _set(lambda d: _job(d, "eval-sweep"), "value_usd", 0),
         ("(jobs, eval-sweep)", "value_usd: 0 for an optional job")),
    Case("soft-zero-tardiness", _set(lambda d: _job(d, "finetune-70b"), "tardiness_usd_per_h", 0),
         ("(jobs, finetune-70b)", "tardiness_usd_per_h: 0 with a soft deadline")),
    Case("always-late", _set(lambda d: _job(d, "finetune-70b"), "deadline_period", 5),
         ("(jobs, finetune-70b)", "deadline_period 5 is before the earliest possible end 12")),
    Case("redundancy-one-site", lambda d: None,
         ("(services, code-8b)", "demand.users-eu: redundancy is on but only gcp-euw4")),
    Case("tokens-without-profile", _set(lambda d: _job(d, "pretrain-8b"), "tokens_t", 1.0),
         ("(jobs, pretrain-8b)", "tokens_t: 1 is ignored without a profile")),
    Case("unit-suspect", _set(lambda d: _site(d, "colossus-1"), "energy_price_usd_per_mwh", 0.0623),
         ("(sites, colossus-1)", "energy_price_usd_per_mwh: mean 0.0623", "looks like $/kWh")),
    Case("unit-suspect", lambda d: d["gpu_types"][1].__setitem__("power_kw", 1000),
         ("(gpu_types, H200)", "power_kw: 1000 kW per GPU", "a 700 W GPU is 0.7"), name="unit-suspect-watts"),
    Case("value-unusual", _set(lambda d: d["horizon"], "period_hours", 200.0),
         ("(horizon, -)", "period_hours: 200 hours (744 = 31 days) is above the usual 168")),
    Case("value-unusual", lambda d: _svc(d, "code-8b")["tokens_per_s_per_gpu"].__setitem__("H100", 250_000),
         ("(services, code-8b)", "tokens_per_s_per_gpu: 250000 tokens/s per GPU is above the usual 100000"),
         name="value-unusual-throughput"),
    Case("link-self-loop", _self_loop, ("(links, aws-use1-aws-use1)", "a and b are both 'aws-use1'")),
    Case("duplicate-link", _dup_link, ("(links, colossus-1-users-us-east)", "a second link between")),
    Case("node-shared", _shared_node, ("(network, colossus-1)", "shared by a region and a site")),
]
