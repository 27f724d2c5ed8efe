"""The instance schema: every entity of the problem with its units (pydantic v2).

Field names carry their unit (``power_cap_mw``, ``price_usd_per_gpu_h``). Extra fields are
forbidden, so a misspelt key is reported instead of silently ignored. This module checks
each entity on its own (types, signs, NaN/inf); cross-references between entities (an
unknown GPU type, a cycle of predecessors, a job that fits nowhere) are checked in
``allocator.validate``.

Time series (power ceiling, energy price, carbon intensity, demand) are either one number
(constant over the horizon) or a list with one value per period.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Pos = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Series = NonNeg | list[NonNeg]
Id = Annotated[str, Field(min_length=1, max_length=200)]


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
    periods: int = Field(gt=0, le=100_000, description="number of periods")
    period_hours: Pos = Field(1.0, description="length of one period in hours")

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
    power_kw: Pos = Field(description="server-level power per GPU, kW")
    memory_gb: NonNeg = Field(0.0, description="memory per GPU, GB")
    relative_throughput: Pos = Field(1.0, description="training throughput relative to H100")
    source: str = Field("", description="where the figures come from")


class GpuPool(Strict):
    """GPUs of one type at one site. ``reserved`` GPUs are paid every hour whether used or
    not; GPUs above the reserved block, up to ``available``, are leased on demand."""

    gpu_type: Id
    available: int = Field(ge=0, description="GPUs that can be in use at once")
    reserved: int = Field(0, ge=0, description="GPUs paid whether used or not")
    reserved_price_usd_per_gpu_h: NonNeg = Field(0.0, description="$/GPU-hour of reserved GPUs")
    ondemand_price_usd_per_gpu_h: NonNeg = Field(0.0, description="$/GPU-hour above reserved")
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
    power_cap_mw: Series = Field(description="IT x PUE ceiling, MW (one value or per period)")
    pue: float = Field(1.0, ge=1.0, le=5.0, allow_inf_nan=False, description="power usage effectiveness")
    energy_price_usd_per_mwh: Series = Field(
        0.0, description="energy billed separately, $/MWh (0 where included in the GPU price)"
    )
    carbon_g_per_kwh: Series = Field(0.0, description="grid carbon intensity, gCO2/kWh")
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
    latency_ms: NonNeg
    bandwidth_gbps: Pos | None = Field(None, description="capacity, Gb/s; none = unlimited")
    egress_usd_per_gb: NonNeg = 0.0


class ExecutionOption(Strict):
    """One way to run a training job: ``gpus`` GPUs of ``gpu_type`` for ``hours`` hours."""

    gpu_type: Id
    gpus: int = Field(gt=0)
    hours: Pos


class TrainingJob(Strict):
    """A gang-scheduled training run: starts once, runs uninterrupted on all its GPUs."""

    id: Id
    profile: str | None = Field(None, description="AI model profile in models/")
    tokens_t: Pos | None = Field(None, description="tokens to train, trillions (with profile)")
    options: list[ExecutionOption] = Field(default_factory=list)
    release_period: int = Field(0, ge=0, description="earliest start period")
    deadline_period: int | None = Field(
        None, ge=1, description="period by whose start the job must end; none = horizon end"
    )
    deadline: Literal["hard", "soft"] = "hard"
    tardiness_usd_per_h: NonNeg = Field(0.0, description="penalty per hour late (soft)")
    mandatory: bool = True
    value_usd: NonNeg = Field(0.0, description="earned if an optional job runs")
    allowed_sites: list[Id] | None = None
    allowed_zones: list[str] | None = None
    dataset_source: str | None = Field(None, description="data source id the dataset is read from")
    dataset_tb: NonNeg = Field(0.0, description="dataset size, TB, staged to the site")
    predecessors: list[Id] = Field(default_factory=list)
    site_cost_usd: dict[str, NonNeg] = Field(
        default_factory=dict, description="extra one-off cost per site (staging, migration)"
    )
    move_cost_usd: NonNeg | None = Field(
        None, description="re-planning: paid if the job moves; none = dataset_tb x route egress + move_fixed_usd")
    move_fixed_usd: NonNeg = Field(0.0, description="re-planning: fixed part of the derived move cost")
    retime_cost_usd_per_h: NonNeg = Field(0.0, description="re-planning: per hour its start shifts")

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
    tokens_per_s_per_gpu: dict[str, Pos] = Field(
        default_factory=dict, description="throughput per GPU, by GPU type"
    )
    latency_slo_ms: Pos = Field(description="max network latency site -> region, ms")
    bytes_per_token: NonNeg = Field(4.0, description="bytes sent over the network per token")
    redundancy: bool = Field(False, description="N+1: served demand survives losing any one site")
    unserved_usd_per_mtok: NonNeg = Field(description="penalty per unserved million tokens")
    scale_cost_usd_per_gpu: NonNeg = Field(
        0.0, description="re-planning: per GPU added or removed at a site against the previous plan")
    demand: dict[str, Series] = Field(
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

    gpu_hours_h100: Pos
    reference_tokens_t: Pos
    gpus: dict[str, Annotated[int, Field(gt=0)]]


class InferenceProfile(Strict):
    tokens_per_s_per_gpu: dict[str, Pos]
    memory_gb: NonNeg = 0.0


class ModelProfile(Strict):
    """An AI model workload profile (a file in models/)."""

    id: Id
    name: str = ""
    parameters_b: NonNeg | None = None
    active_parameters_b: NonNeg | None = None
    training_flops: NonNeg | None = None
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
    carbon_price_usd_per_t: NonNeg = Field(0.0, description="$ per tCO2 added to the objective")
    budget_usd: NonNeg | None = Field(None, description="cap on total cost; none = no cap")

    # convenience lookups (not part of the data)
    def gpu_type(self, gid: str) -> GpuType:
        return next(g for g in self.gpu_types if g.id == gid)

    def site(self, sid: str) -> Site:
        return next(s for s in self.sites if s.id == sid)


def finite(x: float) -> bool:
    return x is not None and not (math.isnan(x) or math.isinf(x))
