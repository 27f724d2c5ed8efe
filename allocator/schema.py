"""The instance schema: every entity of the problem with its units (pydantic v2).

Field names carry their unit (``power_cap_mw``, ``price_usd_per_gpu_h``). Extra fields are
forbidden, so a misspelt key is reported instead of silently ignored. This module checks
each entity on its own (types, signs, NaN/inf); cross-references between entities (an
unknown GPU type, a cycle of predecessors, a job that fits nowhere) are checked in
``allocator.validate``.

Time series (power ceiling, energy price, carbon intensity, demand) are either one number
(constant over the horizon) or a list with one value per period.

Every numeric field has a plausible range, all in the one table ``RANGES`` (field -> Range):
a value outside it is an error, a value inside it but beyond ``usual`` draws a warning from
``allocator.validate``. The bounds keep every accepted instance's model coefficients within
what the solver represents exactly; docs/validation.md lists them. Booleans are never numbers
(``gpus: true`` is refused, YAML would read it as 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import annotated_types as at
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

Id = Annotated[str, Field(min_length=1, max_length=200)]


@dataclass(frozen=True)
class Range:
    """Accepted values of a numeric field: ``lo`` (excluded when ``lo_open``) to ``hi``; above
    ``usual`` (where given) a value is legal but draws a warning. ``unit`` as in the docs."""

    lo: float
    hi: float
    unit: str
    lo_open: bool = False
    usual: float | None = None
    whole: bool = False


MAX_PERIODS = 100_000
MAX_GPUS = 10_000_000  # GPUs in one pool or one gang: 10 million

# field -> Range. The one place every numeric bound is written (docs/validation.md shows it).
RANGES: dict[str, Range] = {
    # horizon
    "periods": Range(0, MAX_PERIODS, "periods", lo_open=True, whole=True),
    "period_hours": Range(0, 744, "hours (744 = 31 days)", lo_open=True, usual=168),
    # GPU types
    "power_kw": Range(0, 10_000, "kW per GPU", lo_open=True, usual=5),  # watts typed as kW: warned
    "memory_gb": Range(0, 10_000, "GB per GPU", usual=1_000),
    "relative_throughput": Range(0, 1_000, "x H100", lo_open=True, usual=20),
    # pools and sites
    "available": Range(0, MAX_GPUS, "GPUs", whole=True),
    "reserved": Range(0, MAX_GPUS, "GPUs", whole=True),
    "reserved_price_usd_per_gpu_h": Range(0, 10_000, "$ per GPU-hour", usual=100),
    "ondemand_price_usd_per_gpu_h": Range(0, 10_000, "$ per GPU-hour", usual=100),
    "power_cap_mw": Range(0, 100_000, "MW"),
    "pue": Range(1, 5, "ratio", usual=2),
    "energy_price_usd_per_mwh": Range(0, 100_000, "$/MWh", usual=5_000),
    "carbon_g_per_kwh": Range(0, 5_000, "gCO2/kWh", usual=2_000),
    # links
    "latency_ms": Range(0, 100_000, "ms", usual=1_000),
    "bandwidth_gbps": Range(0, 10_000_000, "Gb/s", lo_open=True, usual=100_000),
    "egress_usd_per_gb": Range(0, 1_000, "$/GB", usual=1),
    # jobs
    "gpus": Range(0, MAX_GPUS, "GPUs", lo_open=True, whole=True),
    "hours": Range(0, 1_000_000, "hours", lo_open=True, usual=100_000),
    "tokens_t": Range(0, 1_000_000, "trillion tokens", lo_open=True),
    "release_period": Range(0, MAX_PERIODS, "periods, counted from 0", whole=True),
    "deadline_period": Range(1, MAX_PERIODS, "periods, counted from 0", whole=True),
    "tardiness_usd_per_h": Range(0, 1e9, "$ per hour late"),
    "value_usd": Range(0, 1e12, "$"),
    "dataset_tb": Range(0, 1_000_000, "TB", usual=100_000),
    "site_cost_usd": Range(0, 1e12, "$"),
    # services
    "tokens_per_s_per_gpu": Range(0, 10_000_000, "tokens/s per GPU", lo_open=True, usual=100_000),
    "latency_slo_ms": Range(0, 100_000, "ms", lo_open=True, usual=10_000),
    "bytes_per_token": Range(0, 1_000_000, "bytes", usual=1_000),
    "unserved_usd_per_mtok": Range(0, 1_000_000, "$ per million tokens", usual=1_000),
    "demand": Range(0, 1e12, "tokens/s"),
    # instance
    "carbon_price_usd_per_t": Range(0, 100_000, "$ per tCO2", usual=1_000),
    "budget_usd": Range(0, 1e15, "$"),
    # AI model profiles
    "gpu_hours_h100": Range(0, 1e12, "H100 GPU-hours", lo_open=True),
    "reference_tokens_t": Range(0, 1_000_000, "trillion tokens", lo_open=True),
    "profile_gpus": Range(0, MAX_GPUS, "GPUs", lo_open=True, whole=True),
    "parameters_b": Range(0, 1_000_000, "billions"),
    "active_parameters_b": Range(0, 1_000_000, "billions"),
    "training_flops": Range(0, 1e35, "FLOP"),
}


def _not_bool(v):
    """YAML reads yes/no/true/false as booleans, which Python would take as 1 and 0."""
    if isinstance(v, bool):
        raise ValueError(f"{str(v).lower()} is a yes/no value, not a number")
    return v


def num(name: str):
    """The annotated number type of field ``name``: its bounds from ``RANGES``, no NaN, inf or
    boolean."""
    r = RANGES[name]
    if r.whole:
        lo = at.Gt(int(r.lo)) if r.lo_open else at.Ge(int(r.lo))
        return Annotated[int, BeforeValidator(_not_bool), lo, at.Le(int(r.hi))]
    lo = at.Gt(r.lo) if r.lo_open else at.Ge(r.lo)
    # NaN and inf first, so 1e400 (read as inf) is called what it is, not 'too large'
    return Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False), lo, at.Le(r.hi)]


def series(name: str):
    """One number (constant over the horizon) or one per period, each within ``RANGES[name]``."""
    one = num(name)
    return one | list[one]


class Strict(BaseModel):
    """Base of all entities: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def series_at(value: float | list[float], t: int) -> float:
    """Value of a constant-or-per-period series in period ``t``."""
    return float(value[t]) if isinstance(value, list) else float(value)


def series_list(value: float | list[float], periods: int) -> list[float]:
    """A constant-or-per-period series expanded to one float per period."""
    if isinstance(value, list):
        return [float(v) for v in value]
    return [float(value)] * periods


class Horizon(Strict):
    """The planning horizon: ``periods`` consecutive periods of ``period_hours`` each."""

    start: datetime = Field(description="start of period 0 (UTC)")
    periods: num("periods") = Field(description="number of periods")
    period_hours: num("period_hours") = Field(1.0, description="length of one period in hours")

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v.astimezone(UTC)

    @property
    def hours(self) -> float:
        return self.periods * self.period_hours


class GpuType(Strict):
    """A GPU generation. ``power_kw`` is per GPU at the server level (board TDP plus its share
    of host, network and in-rack cooling), before the site's PUE."""

    id: Id
    power_kw: num("power_kw") = Field(description="server-level power per GPU, kW")
    memory_gb: num("memory_gb") = Field(0.0, description="memory per GPU, GB")
    relative_throughput: num("relative_throughput") = Field(1.0, description="training throughput relative to H100")
    source: str = Field("", description="where the figures come from")


class GpuPool(Strict):
    """GPUs of one type at one site. ``reserved`` GPUs are paid every hour whether used or
    not; GPUs above the reserved block, up to ``available``, are leased on demand."""

    gpu_type: Id
    available: num("available") = Field(description="GPUs that can be in use at once")
    reserved: num("reserved") = Field(0, description="GPUs paid whether used or not")
    reserved_price_usd_per_gpu_h: num("reserved_price_usd_per_gpu_h") = Field(0.0, description="$/GPU-hour of reserved GPUs")
    ondemand_price_usd_per_gpu_h: num("ondemand_price_usd_per_gpu_h") = Field(0.0, description="$/GPU-hour above reserved")
    source: str = ""

    @model_validator(mode="after")
    def _reserved_le_available(self) -> GpuPool:
        if self.reserved > self.available:
            raise ValueError(
                f"reserved ({self.reserved}) exceeds available ({self.available}); "
                "available counts reserved GPUs too"
            )
        return self


class Site(Strict):
    """A leased data center (or a cloud region)."""

    id: Id
    provider: str = Field(description="colossus, aws, azure, gcp, ...")
    region: str = Field("", description="provider region code or location")
    node: str | None = Field(None, description="network node; defaults to the site id")
    zone: str = Field("", description="data zone for residency, e.g. US or EU")
    power_cap_mw: series("power_cap_mw") = Field(description="IT x PUE ceiling, MW (one value or per period)")
    pue: num("pue") = Field(1.0, description="power usage effectiveness")
    energy_price_usd_per_mwh: series("energy_price_usd_per_mwh") = Field(
        0.0, description="energy billed separately, $/MWh (0 where included in the GPU price)"
    )
    carbon_g_per_kwh: series("carbon_g_per_kwh") = Field(0.0, description="grid carbon intensity, gCO2/kWh")
    pools: list[GpuPool] = Field(default_factory=list)
    source: str = ""

    @property
    def node_id(self) -> str:
        return self.node or self.id


class Region(Strict):
    """A user region: where inference demand comes from."""

    id: Id
    node: str | None = None
    zone: str = ""

    @property
    def node_id(self) -> str:
        return self.node or self.id


class DataSource(Strict):
    """Where a training dataset lives (a bucket, a lake)."""

    id: Id
    node: str | None = None
    zone: str = ""

    @property
    def node_id(self) -> str:
        return self.node or self.id


class Link(Strict):
    """An undirected network edge between two nodes."""

    a: Id
    b: Id
    latency_ms: num("latency_ms")
    bandwidth_gbps: num("bandwidth_gbps") | None = Field(None, description="capacity, Gb/s; none = unlimited")
    egress_usd_per_gb: num("egress_usd_per_gb") = 0.0


class ExecutionOption(Strict):
    """One way to run a training job: ``gpus`` GPUs of ``gpu_type`` for ``hours`` hours."""

    gpu_type: Id
    gpus: num("gpus")
    hours: num("hours")


class TrainingJob(Strict):
    """A gang-scheduled training run: starts once, runs uninterrupted on all its GPUs."""

    id: Id
    profile: str | None = Field(None, description="AI model profile in models/")
    tokens_t: num("tokens_t") | None = Field(None, description="tokens to train, trillions (with profile)")
    options: list[ExecutionOption] = Field(default_factory=list)
    release_period: num("release_period") = Field(0, description="earliest start period")
    deadline_period: num("deadline_period") | None = Field(
        None, description="period by whose start the job must end; none = horizon end"
    )
    deadline: Literal["hard", "soft"] = "hard"
    tardiness_usd_per_h: num("tardiness_usd_per_h") = Field(0.0, description="penalty per hour late (soft)")
    mandatory: bool = True
    value_usd: num("value_usd") = Field(0.0, description="earned if an optional job runs")
    allowed_sites: list[Id] | None = None
    allowed_zones: list[str] | None = None
    dataset_source: str | None = Field(None, description="data source id the dataset is read from")
    dataset_tb: num("dataset_tb") = Field(0.0, description="dataset size, TB, staged to the site")
    predecessors: list[Id] = Field(default_factory=list)
    site_cost_usd: dict[str, num("site_cost_usd")] = Field(
        default_factory=dict, description="extra one-off cost per site (staging, migration)"
    )

    @model_validator(mode="after")
    def _options_or_profile(self) -> TrainingJob:
        if not self.options and not self.profile:
            raise ValueError("a job needs execution options or a profile to derive them from")
        if self.deadline == "soft" and self.deadline_period is None:
            raise ValueError("a soft deadline needs deadline_period")
        return self


class InferenceService(Strict):
    """A model served to user regions, with demand per region and period in tokens/s."""

    id: Id
    profile: str | None = None
    tokens_per_s_per_gpu: dict[str, num("tokens_per_s_per_gpu")] = Field(
        default_factory=dict, description="throughput per GPU, by GPU type"
    )
    latency_slo_ms: num("latency_slo_ms") = Field(description="max network latency site -> region, ms")
    bytes_per_token: num("bytes_per_token") = Field(4.0, description="bytes sent over the network per token")
    redundancy: bool = Field(False, description="N+1: served demand survives losing any one site")
    unserved_usd_per_mtok: num("unserved_usd_per_mtok") = Field(description="penalty per unserved million tokens")
    demand: dict[str, series("demand")] = Field(
        default_factory=dict, description="tokens/s per user region (one value or per period)"
    )
    allowed_sites: list[Id] | None = None
    allowed_zones: list[str] | None = None

    @model_validator(mode="after")
    def _throughput_or_profile(self) -> InferenceService:
        if not self.tokens_per_s_per_gpu and not self.profile:
            raise ValueError("a service needs tokens_per_s_per_gpu or a profile")
        return self


class TrainingProfile(Strict):
    """How a model trains: reference GPU-hours (H100-equivalent) for a reference token count,
    and the GPU count used per GPU type. Hours on type g =
    gpu_hours_h100 * tokens / reference_tokens_t / (gpus[g] * relative_throughput[g])."""

    gpu_hours_h100: num("gpu_hours_h100")
    reference_tokens_t: num("reference_tokens_t")
    gpus: dict[str, num("profile_gpus")]


class InferenceProfile(Strict):
    tokens_per_s_per_gpu: dict[str, num("tokens_per_s_per_gpu")]
    memory_gb: num("memory_gb") = 0.0


class ModelProfile(Strict):
    """An AI model workload profile (a file in models/)."""

    id: Id
    name: str = ""
    parameters_b: num("parameters_b") | None = None
    active_parameters_b: num("active_parameters_b") | None = None
    training_flops: num("training_flops") | None = None
    estimate: bool = Field(False, description="true where the figures are estimates")
    training: TrainingProfile | None = None
    inference: InferenceProfile | None = None
    sources: list[str] = Field(default_factory=list)
    notes: str = ""


class Instance(Strict):
    """A complete planning instance."""

    name: str = "instance"
    description: str = ""
    horizon: Horizon
    gpu_types: list[GpuType]
    sites: list[Site]
    regions: list[Region] = Field(default_factory=list)
    data_sources: list[DataSource] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    jobs: list[TrainingJob] = Field(default_factory=list)
    services: list[InferenceService] = Field(default_factory=list)
    profiles: list[ModelProfile] = Field(
        default_factory=list, description="profiles used by jobs/services (filled by the loader)"
    )
    carbon_price_usd_per_t: num("carbon_price_usd_per_t") = Field(0.0, description="$ per tCO2 added to the objective")
    budget_usd: num("budget_usd") | None = Field(None, description="cap on total cost; none = no cap")

    # convenience lookups (not part of the data)
    def gpu_type(self, gid: str) -> GpuType:
        return next(g for g in self.gpu_types if g.id == gid)

    def site(self, sid: str) -> Site:
        return next(s for s in self.sites if s.id == sid)


def finite(x: float) -> bool:
    return x is not None and not (math.isnan(x) or math.isinf(x))
