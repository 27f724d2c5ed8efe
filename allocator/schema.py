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
    ValidationError,
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
    "power_price_usd_per_mw_h": Range(0, 1_000_000, "$ per MW-hour of power ceiling", usual=10_000),
    # leasing: commitment offers and power options (first-stage decisions)
    "offer_price_usd_per_gpu_h": Range(0, 10_000, "$ per GPU-hour", usual=100),
    "offer_gpus": Range(0, MAX_GPUS, "GPUs", whole=True),
    "offer_step_gpus": Range(0, MAX_GPUS, "GPUs", lo_open=True, whole=True),
    "option_mw": Range(0, 100_000, "MW"),
    "option_step_mw": Range(0, 100_000, "MW", lo_open=True),
    "probability": Range(0, 1, "probability", lo_open=True),
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
    "move_cost_usd": Range(0, 1e12, "$"),
    "move_fixed_usd": Range(0, 1e12, "$"),
    "retime_cost_usd_per_h": Range(0, 1e9, "$ per hour of shift"),
    # services
    "tokens_per_s_per_gpu": Range(0, 10_000_000, "tokens/s per GPU", lo_open=True, usual=100_000),
    "latency_slo_ms": Range(0, 100_000, "ms", lo_open=True, usual=10_000),
    "bytes_per_token": Range(0, 1_000_000, "bytes", usual=1_000),
    "unserved_usd_per_mtok": Range(0, 1_000_000, "$ per million tokens", usual=1_000),
    "demand": Range(0, 1e12, "tokens/s"),
    "scale_cost_usd_per_gpu": Range(0, 1e9, "$ per GPU added or removed"),
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


#: most block sizes one offer or power option may allow (a lease decision is an integer
#: number of steps; more steps than this is a typo in step or max more often than intent)
MAX_LEASE_STEPS = 1_000_000


def _divides(lo: float, hi: float, step: float) -> int:
    """Number of steps from lo to hi, or ValueError when step does not divide hi - lo."""
    n = (hi - lo) / step
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ValueError(f"step {step:g} does not divide the range {lo:g} to {hi:g} "
                         f"(a width of {hi - lo:g})")
    if round(n) > MAX_LEASE_STEPS:
        raise ValueError(f"{round(n):,} steps from {lo:g} to {hi:g}; at most {MAX_LEASE_STEPS:,}")
    return int(round(n))


class ReserveOffer(Strict):
    """A commitment offer for a pool's reserved block: a block of min_gpus, min_gpus +
    step_gpus, ..., max_gpus GPUs (or none), paid every hour of the horizon whether used."""

    term: str = Field(min_length=1, max_length=40, description="commitment term, e.g. 1y or 3y")
    price_usd_per_gpu_h: num("offer_price_usd_per_gpu_h") = Field(description="$/GPU-hour of the block")
    min_gpus: num("offer_gpus") = Field(0, description="smallest block if taken, GPUs")
    max_gpus: num("offer_gpus") = Field(description="largest block, GPUs")
    step_gpus: num("offer_step_gpus") = Field(1, description="block sizes go up in steps of this, GPUs")
    source: str = ""

    @model_validator(mode="after")
    def _range(self) -> ReserveOffer:
        if self.max_gpus < self.min_gpus:
            raise ValueError(f"max_gpus ({self.max_gpus}) is below min_gpus ({self.min_gpus})")
        _divides(self.min_gpus, self.max_gpus, self.step_gpus)
        return self

    @property
    def steps(self) -> int:
        """Steps above min_gpus: the block is min_gpus + step_gpus * k, k in 0..steps."""
        return _divides(self.min_gpus, self.max_gpus, self.step_gpus)

    def sizes(self) -> list[int]:
        """Every block size this offer allows when taken, smallest first."""
        return [self.min_gpus + k * self.step_gpus for k in range(self.steps + 1)]


class PowerOption(Strict):
    """A site's power ceiling as a decision: min_mw, min_mw + step_mw, ..., max_mw, constant
    over the horizon, its lease paid every hour whether drawn."""

    term: str = Field("lease", min_length=1, max_length=40, description="label of the lease, e.g. 180d")
    price_usd_per_mw_h: num("power_price_usd_per_mw_h") = Field(description="$ per MW-hour of ceiling")
    min_mw: num("option_mw") = Field(0.0, description="smallest ceiling, MW")
    max_mw: num("option_mw") = Field(description="largest ceiling, MW")
    step_mw: num("option_step_mw") = Field(description="ceilings go up in steps of this, MW")
    source: str = ""

    @model_validator(mode="after")
    def _range(self) -> PowerOption:
        if self.max_mw < self.min_mw:
            raise ValueError(f"max_mw ({self.max_mw:g}) is below min_mw ({self.min_mw:g})")
        _divides(self.min_mw, self.max_mw, self.step_mw)
        return self

    @property
    def steps(self) -> int:
        return _divides(self.min_mw, self.max_mw, self.step_mw)

    def sizes(self) -> list[float]:
        """Every ceiling this option allows, smallest first (MW)."""
        return [self.min_mw + k * self.step_mw for k in range(self.steps + 1)]


class GpuPool(Strict):
    """GPUs of one type at one site. ``reserved`` GPUs are paid every hour whether used or
    not; GPUs above the reserved block, up to ``available``, are leased on demand."""

    gpu_type: Id
    available: num("available") = Field(description="GPUs that can be in use at once")
    reserved: num("reserved") = Field(0, description="GPUs paid whether used or not")
    reserved_price_usd_per_gpu_h: num("reserved_price_usd_per_gpu_h") = Field(0.0, description="$/GPU-hour of reserved GPUs")
    ondemand_price_usd_per_gpu_h: num("ondemand_price_usd_per_gpu_h") = Field(0.0, description="$/GPU-hour above reserved")
    reserve_options: list[ReserveOffer] | None = Field(
        None, description="commitment offers: the reserved block is then a decision (at most one offer taken)")
    source: str = ""

    @model_validator(mode="after")
    def _reserved_le_available(self) -> GpuPool:
        if self.reserved > self.available:
            raise ValueError(
                f"reserved ({self.reserved}) exceeds available ({self.available}); "
                "available counts reserved GPUs too"
            )
        if self.reserve_options is not None:
            if self.reserved:
                raise ValueError(
                    f"a fixed reserved block ({self.reserved}) and reserve_options together; "
                    "with reserve_options the block is decided: drop reserved")
            for k, o in enumerate(self.reserve_options):
                if o.max_gpus > self.available:
                    raise ValueError(
                        f"reserve_options[{k}].max_gpus ({o.max_gpus}) exceeds available "
                        f"({self.available}); a block cannot be larger than the pool")
        return self


class Site(Strict):
    """A leased data center (or a cloud region)."""

    id: Id
    provider: str = Field(description="colossus, aws, azure, gcp, ...")
    region: str = Field("", description="provider region code or location")
    node: str | None = Field(None, description="network node; defaults to the site id")
    zone: str = Field("", description="data zone for residency, e.g. US or EU")
    power_cap_mw: series("power_cap_mw") | None = Field(
        None, description="IT x PUE ceiling, MW (one value or per period); or power_options")
    power_price_usd_per_mw_h: num("power_price_usd_per_mw_h") = Field(
        0.0, description="lease of the power ceiling, $ per MW-hour of power_cap_mw, paid whether drawn")
    power_options: PowerOption | None = Field(
        None, description="the power ceiling as a decision (instead of power_cap_mw)")
    pue: num("pue") = Field(1.0, description="power usage effectiveness")
    energy_price_usd_per_mwh: series("energy_price_usd_per_mwh") = Field(
        0.0, description="energy billed separately, $/MWh (0 where included in the GPU price)"
    )
    carbon_g_per_kwh: series("carbon_g_per_kwh") = Field(0.0, description="grid carbon intensity, gCO2/kWh")
    pools: list[GpuPool] = Field(default_factory=list)
    source: str = ""

    @model_validator(mode="wrap")
    @classmethod
    def _ceiling_given(cls, data, handler):
        """power_cap_mw is required unless power_options decides the ceiling: reported as a
        missing field, beside any other error of the site."""
        missing = isinstance(data, dict) and "power_cap_mw" not in data and "power_options" not in data
        try:
            site = handler(data)
        except ValidationError as exc:
            if not missing:
                raise
            errors = [{k: v for k, v in e.items() if k in ("type", "loc", "input", "ctx")}
                      for e in exc.errors()]
            raise ValidationError.from_exception_data(
                exc.title, [*errors, {"type": "missing", "loc": ("power_cap_mw",), "input": data}]) from None
        if missing:
            raise ValidationError.from_exception_data(
                cls.__name__, [{"type": "missing", "loc": ("power_cap_mw",), "input": data}])
        return site

    @field_validator("power_cap_mw", mode="before")
    @classmethod
    def _cap_given(cls, v):
        if v is None:  # written as a key with nothing after it (leaving it out is fine with power_options)
            raise ValueError("no value given (got None)")
        return v

    @model_validator(mode="after")
    def _one_ceiling(self) -> Site:
        if self.power_options is not None and self.power_cap_mw is not None:
            raise ValueError("a fixed power_cap_mw and power_options together; give one: "
                             "power_cap_mw for a fixed ceiling, power_options to decide it")
        if self.power_options is not None and self.power_price_usd_per_mw_h:
            raise ValueError("power_price_usd_per_mw_h and power_options together; with power_options "
                             "the lease price is power_options.price_usd_per_mw_h")
        return self

    @property
    def node_id(self) -> str:
        return self.node or self.id

    @property
    def ceiling_mw(self) -> float | list[float]:
        """The power ceiling, or its largest possible value when it is a decision (max_mw)."""
        if self.power_options is not None:
            return float(self.power_options.max_mw)
        return self.power_cap_mw


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
    move_cost_usd: num("move_cost_usd") | None = Field(
        None, description="re-planning: paid if the job moves; none = dataset_tb x route egress + move_fixed_usd")
    move_fixed_usd: num("move_fixed_usd") = Field(0.0, description="re-planning: fixed part of the derived move cost")
    retime_cost_usd_per_h: num("retime_cost_usd_per_h") = Field(
        0.0, description="re-planning: per hour its start shifts")
    scenarios: list[Id] | None = Field(
        None, description="ids of the demand scenarios the job exists in; none = all")

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
    scale_cost_usd_per_gpu: num("scale_cost_usd_per_gpu") = Field(
        0.0, description="re-planning: per GPU added or removed at a site against the previous plan")
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


class Override(Strict):
    """One change a scenario makes to the instance, a path in the syntax of sweep specs
    (docs/sweeps.md) and either a value to set or a factor to scale by."""

    path: str = Field(min_length=1, max_length=500)
    value: float | int | list[float] | None = None
    scale: Annotated[float, AllowInfNan(False), at.Ge(0)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Override:
        if (self.value is None) == (self.scale is None):
            raise ValueError("give exactly one of value and scale")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"value {self.value} is not a finite number")
        return self


class Scenario(Strict):
    """A demand scenario: lease decisions are shared by all scenarios; placement, serving and
    on-demand GPUs are decided per scenario; the objective weighs each by its probability."""

    id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                             description="letters, digits, '.', '_' and '-': it names a folder")]
    probability: num("probability")
    overrides: list[Override] = Field(default_factory=list)
    description: str = ""


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
    scenarios: list[Scenario] = Field(
        default_factory=list, description="demand scenarios (lease decisions shared); none = one of probability 1")

    @model_validator(mode="after")
    def _probabilities(self) -> Instance:
        if self.scenarios:
            total = math.fsum(sc.probability for sc in self.scenarios)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"scenario probabilities sum to {total:.6g}, not 1")
        return self

    # convenience lookups (not part of the data)
    def gpu_type(self, gid: str) -> GpuType:
        return next(g for g in self.gpu_types if g.id == gid)

    def site(self, sid: str) -> Site:
        return next(s for s in self.sites if s.id == sid)


def finite(x: float) -> bool:
    return x is not None and not (math.isnan(x) or math.isinf(x))
