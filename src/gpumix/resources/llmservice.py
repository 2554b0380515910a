"""The LLMService custom resource (group gpumix.io, version v1alpha1).

These models are the single source of truth: the CRD in ``crds/`` and the Helm chart are
generated from them (:mod:`gpumix.resources.crd`), the CLI validates files with them, and the
operator parses every object it receives with them.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gpumix.resources.meta import Condition, ObjectMeta
from gpumix.resources.owned import owned_argument_problem, owned_env_problem
from gpumix.resources.types import CamelModel, DecimalString


class Objective(StrEnum):
    MIN_COST = "MinCost"
    MAX_THROUGHPUT = "MaxThroughput"


class WeightFormatName(StrEnum):
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"


class CapacityType(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"
    RESERVED = "reserved"


TensorParallelSize = Literal[1, 2, 4, 8]
Positive = Annotated[int, Field(ge=1)]


class ArchitectureSpec(CamelModel):
    """Shape of a model that is not in gpumix's catalogue."""

    parameters_billions: float = Field(gt=0, description="Total parameters, in billions.")
    layers: Positive = Field(description="Transformer layers.")
    hidden_size: Positive = Field(description="Hidden (model) dimension.")
    attention_heads: Positive = Field(description="Query attention heads.")
    kv_heads: Positive = Field(description="Key/value heads (grouped-query attention).")
    head_dim: Positive = Field(description="Dimension of one attention head.")
    intermediate_size: Positive = Field(description="MLP intermediate dimension.")
    vocab_size: Positive = Field(description="Vocabulary size.")
    active_parameters_billions: float | None = Field(
        default=None,
        gt=0,
        description="Mixture-of-experts only: parameters active per token, in billions.",
    )
    tied_embeddings: bool = Field(
        default=False,
        description="config.json's tie_word_embeddings: the output projection is the input "
        "embedding (read once per decode step instead of twice the vocabulary's weights).",
    )


class ModelSpec(CamelModel):
    name: str = Field(
        min_length=1,
        description="Catalogue key (e.g. meta-llama/Llama-3.1-8B-Instruct) or any Hugging Face "
        "id; vLLM's --model.",
    )
    architecture: ArchitectureSpec | None = Field(
        default=None, description="Required when name is not in gpumix's model catalogue."
    )
    max_model_len: int = Field(
        default=8192, ge=128, le=1_048_576, description="vLLM --max-model-len, in tokens."
    )
    weight_formats: list[WeightFormatName] = Field(
        default=[WeightFormatName.BF16],
        min_length=1,
        description="Weight formats the planner may choose from.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class RequestClassSpec(CamelModel):
    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Class name (DNS label).",
    )
    input_tokens: int = Field(ge=1, le=1_048_576, description="Prompt tokens per request.")
    output_tokens: int = Field(ge=1, le=1_048_576, description="Generated tokens per request.")
    share: int = Field(
        ge=1, le=1_000_000, description="Relative share of requests (normalised over classes)."
    )


DEFAULT_CLASSES = [RequestClassSpec(name="default", input_tokens=512, output_tokens=256, share=100)]


AUTOSCALING_MIN_ABOVE_MAX = "minRequestsPerSecond must not exceed maxRequestsPerSecond"


class AutoscalingSpec(CamelModel):
    """Plan on the load observed in Prometheus instead of the written demand.

    HPA's semantics, on requests/s: a scale-up needs the load above the band for the whole
    up-stabilisation window, a scale-down takes the highest load of the down-stabilisation
    window, and nothing moves inside the tolerance band.
    """

    enabled: bool = Field(default=False, description="Plan on the observed load.")
    min_requests_per_second: DecimalString = Field(
        default=Decimal("0.1"),
        description="Floor of the demand planned for, whatever the load (a decimal string).",
    )
    max_requests_per_second: DecimalString | None = Field(
        default=None,
        description="Ceiling of the demand planned for (a decimal string); absent = no ceiling.",
    )
    scale_up_stabilization_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Seconds the load must stay above the band before the plan grows.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="The plan shrinks to the highest load seen over this many seconds.",
    )
    tolerance_percent: int = Field(
        default=15,
        ge=0,
        le=100,
        description="Load within this percentage of the planned demand changes nothing; the "
        "request mix moves when its classes' shares shift by more than this many points.",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> AutoscalingSpec:
        ceiling = self.max_requests_per_second
        if ceiling is not None and self.min_requests_per_second > ceiling:
            raise ValueError(AUTOSCALING_MIN_ABOVE_MAX)
        return self


class WorkloadSpec(CamelModel):
    requests_per_second: DecimalString = Field(
        description="Total demand in requests/s (MinCost) or the reference demand "
        "(MaxThroughput), as a decimal string. With autoscaling: the starting point."
    )
    headroom_percent: int = Field(
        default=20, ge=0, le=1000, description="Capacity planned above demand, in percent."
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Plan on the load observed in Prometheus (off when absent)."
    )
    classes: list[RequestClassSpec] = Field(
        default=DEFAULT_CLASSES,
        min_length=1,
        max_length=32,
        description="Request mix; default one class of 512 input / 256 output tokens.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )


class SLOSpec(CamelModel):
    ttft_milliseconds: int = Field(
        default=2000, ge=1, le=600_000, description="Time-to-first-token target."
    )
    tpot_milliseconds: int = Field(
        default=100, ge=1, le=60_000, description="Time-per-output-token target."
    )


class BudgetSpec(CamelModel):
    max_cost_per_hour: DecimalString | None = Field(
        default=None, description="Upper bound on this service's GPU cost in USD per hour."
    )


class PlacementSpec(CamelModel):
    gpu_types: list[str] = Field(
        default_factory=list,
        description="Allow-list of GPU types (catalogue names); empty allows every known type.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    capacity_types: list[CapacityType] = Field(
        default=[CapacityType.ON_DEMAND, CapacityType.SPOT],
        min_length=1,
        description="Capacity types the planner may use.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    tensor_parallel_sizes: list[TensorParallelSize] = Field(
        default=[1, 2, 4, 8],
        min_length=1,
        description="Tensor-parallel sizes the planner may use.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    min_replicas: int = Field(default=1, ge=0, le=10_000, description="Fewest replicas in all.")
    max_replicas: int = Field(default=64, ge=1, le=10_000, description="Most replicas in all.")
    min_on_demand_replicas: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="Spot hedge: replicas that must run on on-demand (or reserved) capacity.",
    )

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> PlacementSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        if self.min_on_demand_replicas > self.max_replicas:
            raise ValueError("minOnDemandReplicas must not exceed maxReplicas")
        return self


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
# Sizes as Kubernetes quantities, without exponents or milli-units (nobody means 1.5m bytes).
SIZE_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
# Bounds that keep the CRD's CEL rules within the API server's cost budget.
MAX_EXTRA_ARGS = 256
MAX_ENV = 256
MAX_ARG_LENGTH = 4096

ENV_VALUE_OR_VALUE_FROM = "set value or valueFrom, not both"
VALUE_FROM_ONE_SOURCE = "set exactly one of secretKeyRef or configMapKeyRef"
MODEL_CACHE_ONE_VOLUME = "set exactly one of persistentVolumeClaim or emptyDir"


class KeySelector(CamelModel):
    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Object name."
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=CONFIG_KEY, description="Key within the object."
    )
    optional: bool | None = Field(
        default=None,
        description="Start the pod even when the object or key is missing (default false).",
    )


class EnvVarSource(CamelModel):
    secret_key_ref: KeySelector | None = Field(
        default=None, description="A key of a Secret in the LLMService's namespace."
    )
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap in the LLMService's namespace."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError(VALUE_FROM_ONE_SOURCE)
        return self


class EnvVar(CamelModel):
    name: str = Field(min_length=1, max_length=1024, description="Environment variable name.")
    # No default: the API server would fill it in next to a valueFrom.
    value: str | None = Field(
        default=None, description="Literal value (absent with valueFrom: empty)."
    )
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Read the value from a Secret or ConfigMap key (e.g. HF_TOKEN), so it "
        "need not sit in the LLMService in plain text.",
    )

    @model_validator(mode="after")
    def _value_or_value_from(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(ENV_VALUE_OR_VALUE_FROM)
        return self


def _not_owned_argument(argument: str) -> str:
    problem = owned_argument_problem(argument)
    if problem is not None:
        raise ValueError(problem)
    return argument


def _not_owned_env(env: EnvVar) -> EnvVar:
    problem = owned_env_problem(env.name)
    if problem is not None:
        raise ValueError(problem)
    return env


# Validated one item at a time, so an error names the index: spec.serving.extraArgs[1].
ExtraArgument = Annotated[
    str, Field(max_length=MAX_ARG_LENGTH), AfterValidator(_not_owned_argument)
]
UserEnvVar = Annotated[EnvVar, AfterValidator(_not_owned_env)]


class PersistentVolumeClaimCache(CamelModel):
    claim_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="A PersistentVolumeClaim in the LLMService's namespace. Every replica of "
        "every configuration mounts it: use ReadWriteMany unless all replicas share a node.",
    )


class EmptyDirCache(CamelModel):
    size_limit: str | None = Field(
        default=None,
        pattern=SIZE_QUANTITY,
        description="Most the cache may hold on the node's disk (e.g. 100Gi); the pod is "
        "evicted beyond it, so leave room for the weights. Unset: no limit.",
    )


class ModelCacheSpec(CamelModel):
    persistent_volume_claim: PersistentVolumeClaimCache | None = Field(
        default=None, description="Keep the weights across restarts and replicas."
    )
    empty_dir: EmptyDirCache | None = Field(
        default=None, description="A per-pod cache on the node's disk, with a size limit."
    )

    @model_validator(mode="after")
    def _one_volume(self) -> ModelCacheSpec:
        if (self.persistent_volume_claim is None) == (self.empty_dir is None):
            raise ValueError(MODEL_CACHE_ONE_VOLUME)
        return self


class ServingSpec(CamelModel):
    image: str = Field(default="vllm/vllm-openai:v0.11.0", min_length=1, description="vLLM image.")
    extra_args: list[ExtraArgument] = Field(
        default_factory=list,
        max_length=MAX_EXTRA_ARGS,
        description="Extra arguments appended to the vLLM command line. Flags gpumix sets "
        "(--model, --served-model-name, --tensor-parallel-size/-tp, --pipeline-parallel-size, "
        "--data-parallel-size, --max-model-len, --max-num-seqs, --max-num-batched-tokens, "
        "--quantization/-q, --dtype, --port, --host) "
        "are refused.",
    )
    env: list[UserEnvVar] = Field(
        default_factory=list,
        max_length=MAX_ENV,
        description="Extra environment variables for the vLLM container. NVIDIA_VISIBLE_DEVICES, "
        "CUDA_VISIBLE_DEVICES, HOME, HF_HOME and USER are set by gpumix and refused.",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="OpenAI-compatible HTTP port.")
    model_cache: ModelCacheSpec | None = Field(
        default=None,
        description="Where vLLM keeps downloaded weights (HF_HOME): a PersistentVolumeClaim "
        "or an emptyDir. Unset: a per-pod emptyDir without a size limit, so every new pod "
        "downloads the weights again.",
    )


class RoutingMode(StrEnum):
    PLAN_WEIGHTED = "PlanWeighted"
    ROUND_ROBIN = "RoundRobin"


class RoutingSpec(CamelModel):
    mode: RoutingMode = Field(
        default=RoutingMode.PLAN_WEIGHTED,
        description="PlanWeighted: the router sends each request class to the configurations "
        "the plan assigned it, in the plan's shares. RoundRobin: a plain split over every "
        "ready pod (what a Service alone does), for comparison.",
    )


MAX_THROUGHPUT_NEEDS_BUDGET = "objective MaxThroughput needs budget.maxCostPerHour"


class LLMServiceSpec(CamelModel):
    objective: Objective = Field(
        default=Objective.MIN_COST,
        description="MinCost: cheapest plan serving the demand. MaxThroughput: most demand "
        "served within budget.maxCostPerHour.",
    )
    model: ModelSpec = Field(description="The model to serve.")
    workload: WorkloadSpec = Field(description="Demand and request mix.")
    slo: SLOSpec = Field(default_factory=SLOSpec, description="Latency targets.")
    budget: BudgetSpec | None = Field(default=None, description="Cost ceiling.")
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec, description="Where the planner may place replicas."
    )
    serving: ServingSpec = Field(default_factory=ServingSpec, description="vLLM settings.")
    routing: RoutingSpec = Field(
        default_factory=RoutingSpec, description="How the router splits requests."
    )

    @model_validator(mode="after")
    def _classes_fit_the_context(self) -> LLMServiceSpec:
        # vLLM refuses such a request on every GPU; one line here, not one per configuration
        limit = self.model.max_model_len
        for index, request_class in enumerate(self.workload.classes):
            tokens = request_class.input_tokens + request_class.output_tokens
            if tokens > limit:
                raise ValueError(
                    f"workload.classes[{index}] ({request_class.name}): inputTokens + "
                    f"outputTokens = {tokens} exceeds model.maxModelLen {limit}"
                )
        return self

    @model_validator(mode="after")
    def _max_throughput_needs_budget(self) -> LLMServiceSpec:
        if self.objective is Objective.MAX_THROUGHPUT and (
            self.budget is None or self.budget.max_cost_per_hour is None
        ):
            raise ValueError(MAX_THROUGHPUT_NEEDS_BUDGET)
        return self

    @property
    def max_cost_per_hour(self) -> Decimal | None:
        return None if self.budget is None else self.budget.max_cost_per_hour


class PlanEntryStatus(CamelModel):
    deployment: str = Field(description="Name of the Deployment serving this entry.")
    pool: str = Field(description="GPU pool the replicas run on.")
    gpu_type: str
    capacity_type: str
    tensor_parallel: int
    weight_format: str
    replicas: int = Field(description="Desired replicas.")
    ready_replicas: int = Field(default=0, description="Replicas passing readiness.")
    gpus: int
    cost_per_hour: DecimalString
    assignment: dict[str, str] = Field(
        default_factory=dict, description="Share of each request class sent here (0..1)."
    )


class BaselineStatus(CamelModel):
    name: str = Field(description="e.g. homogeneous:A100-80GB")
    cost_per_hour: DecimalString


class ObservedDemandStatus(CamelModel):
    requests_per_second: DecimalString = Field(
        description="Load observed now: the larger of the 1 m and 5 m request rates."
    )
    planned_requests_per_second: DecimalString = Field(
        description="Demand the plan is sized for (before headroom)."
    )
    written_requests_per_second: DecimalString | None = Field(
        default=None,
        description="spec.workload.requestsPerSecond when this was written: a restarted "
        "operator resumes from the planned demand only if the written one is unchanged.",
    )
    class_shares: dict[str, str] = Field(
        default_factory=dict, description="Share of each request class in the planned demand."
    )
    source: str = Field(description="Where the load was read: router, or vllm (fallback).")
    window_seconds: int = Field(description="The rate window of the observed load.")
    time: str = Field(description="When the load was last read.")


class CalibrationStatus(CamelModel):
    gpu_type: str
    tensor_parallel: int
    weight_format: str
    capacity_factor: DecimalString = Field(
        description="Throughputs of this configuration are multiplied by this (live / model)."
    )
    measured_tpot_milliseconds: DecimalString = Field(description="Mean TPOT measured.")
    predicted_tpot_milliseconds: DecimalString = Field(
        description="Mean TPOT gpumix.perf predicts at the measured batch and request shape."
    )


class LLMServiceStatus(CamelModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    cost_per_hour: DecimalString | None = Field(default=None, description="USD per hour.")
    replicas: str | None = Field(default=None, description="ready/desired, for kubectl get.")
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    plan: list[PlanEntryStatus] = Field(default_factory=list)
    baseline: BaselineStatus | None = Field(
        default=None, description="The cheapest single-GPU-type plan under the same constraints."
    )
    savings_percent: DecimalString | None = Field(
        default=None, description="Saving of the plan against the baseline, in percent."
    )
    reasons: list[str] = Field(default_factory=list, description="Planner messages.")
    last_plan_time: str | None = None
    observed_demand: ObservedDemandStatus | None = Field(
        default=None, description="With autoscaling: the load observed and the demand planned."
    )
    calibration: list[CalibrationStatus] | None = Field(
        default=None,
        description="Capacity factors learnt from live latencies, per configuration of this "
        "service's model (absent until a window of requests has been measured).",
    )


class LLMService(CamelModel):
    api_version: Literal["gpumix.io/v1alpha1"] = "gpumix.io/v1alpha1"
    kind: Literal["LLMService"] = "LLMService"
    metadata: ObjectMeta
    spec: LLMServiceSpec
    status: LLMServiceStatus | None = None
