"""The operator's configuration file (``gpumix operator --config``, or ``$GPUMIX_CONFIG``).

The Helm chart renders it from its values (``pricing``, ``discovery``, ``metrics``, ``api``,
``prometheus``) into a
ConfigMap mounted at /etc/gpumix/config.yaml::

    pricing:
      defaults:                       # USD per GPU-hour, decimal strings as in the CRDs
        H100-80GB: {on-demand: "3.93", spot: "2.47"}
    discovery:
      gpuTypeLabels: [nvidia.com/gpu.product, ...]       # most trusted first
      capacityTypeLabels: [karpenter.sh/capacity-type, ...]
    metrics:
      port: 9090                      # 0 disables
    api:                              # the plan/what-if API (read-only)
      enabled: false                  # off by default
      port: 8081
      whatifTimeLimitSeconds: 10      # solver time limit of one what-if
    prometheus:                       # observed load, for LLMServices with autoscaling
      url: http://prometheus:9090     # absent: autoscaling services keep their written demand
      intervalSeconds: 15             # how often the load is read
      timeoutSeconds: 5
    calibration:                      # capacity factors from live latencies (needs prometheus)
      enabled: true
    router:                           # every LLMService's `gpumix router` Deployment
      image: ghcr.io/gpumix/gpumix:0.1.0   # default: this version's image
      imagePullPolicy: IfNotPresent
      replicas: 2

It is read once, at startup, into a frozen :class:`ConfigFile`; a bad file stops the operator
with one line naming the file and the field (exit code 2), since running with prices or label
keys other than the ones the user wrote would plan on the wrong fleet without saying so.
Every section and key is optional; an absent one means the built-in behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationError

from gpumix import catalog
from gpumix.errors import InputError
from gpumix.operator.inventory import CAPACITY_LABELS, GPU_LABELS, InventorySettings
from gpumix.operator.router_manifests import (
    DEFAULT_ROUTER_IMAGE,
    DEFAULT_ROUTER_REPLICAS,
    RouterOptions,
)
from gpumix.resources.types import DECIMAL_PATTERN, CamelModel, DecimalString

# The Kubernetes label-key syntax (optional DNS-subdomain prefix, then a name), as the chart's
# values.schema.json states it.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
MAX_PORT = 65535
DEFAULT_API_PORT = 8081

CapacityType = Literal["on-demand", "spot", "reserved"]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN, max_length=317)]


def _catalogue_gpu_type(name: str) -> str:
    # A price for a type the catalogue does not know would never be used: say so at startup.
    try:
        return catalog.get_gpu(name).name
    except InputError as error:
        raise ValueError(error.detail) from None


GPUTypeName = Annotated[str, AfterValidator(_catalogue_gpu_type)]


def _price_pattern(value: Any) -> Any:
    # The CRDs' pattern, not just anything Decimal() reads ("2.", "1e3"): a price that
    # `kubectl apply` would refuse in spec.pricePerGPUHour is refused here too.
    if isinstance(value, str) and not re.fullmatch(DECIMAL_PATTERN, value):
        raise ValueError(f"must be a decimal string such as '2.47', got {value!r}")
    return value


Price = Annotated[DecimalString, BeforeValidator(_price_pattern)]


class Pricing(CamelModel):
    defaults: dict[GPUTypeName, dict[CapacityType, Price]] = Field(
        default_factory=dict,
        description="USD per GPU-hour by catalogue GPU type and capacity type.",
    )


class Discovery(CamelModel):
    gpu_type_labels: tuple[LabelKey, ...] = GPU_LABELS
    capacity_type_labels: tuple[LabelKey, ...] = CAPACITY_LABELS


class Metrics(CamelModel):
    port: int | None = Field(default=None, ge=0, le=MAX_PORT, strict=True)


class Api(CamelModel):
    """The plan/what-if API: read-only, off unless enabled."""

    enabled: bool = Field(default=False, strict=True)
    port: int = Field(default=DEFAULT_API_PORT, ge=1, le=MAX_PORT, strict=True)
    whatif_time_limit_seconds: float = Field(default=10.0, gt=0, le=300)


class Prometheus(CamelModel):
    """Where the operator reads observed load (LLMServices with workload.autoscaling)."""

    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="e.g. http://prometheus:9090",
    )
    interval_seconds: float = Field(default=15.0, ge=1, le=600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


class Calibration(CamelModel):
    """Capacity factors learnt from the live latencies in Prometheus."""

    enabled: bool = Field(default=True, strict=True)


class Router(CamelModel):
    image: str = Field(default=DEFAULT_ROUTER_IMAGE, min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    replicas: int = Field(default=DEFAULT_ROUTER_REPLICAS, ge=1, le=100, strict=True)

    def options(self) -> RouterOptions:
        return RouterOptions(
            image=self.image, replicas=self.replicas, image_pull_policy=self.image_pull_policy
        )


class ConfigFile(CamelModel):
    pricing: Pricing = Field(default_factory=Pricing)
    discovery: Discovery = Field(default_factory=Discovery)
    metrics: Metrics = Field(default_factory=Metrics)
    api: Api = Field(default_factory=Api)
    router: Router = Field(default_factory=Router)
    prometheus: Prometheus = Field(default_factory=Prometheus)
    calibration: Calibration = Field(default_factory=Calibration)

    def inventory_settings(self) -> InventorySettings:
        return InventorySettings(
            gpu_type_labels=self.discovery.gpu_type_labels,
            capacity_type_labels=self.discovery.capacity_type_labels,
            prices={
                (gpu_type, capacity_type): float(price)
                for gpu_type, by_capacity in self.pricing.defaults.items()
                for capacity_type, price in by_capacity.items()
            },
        )


def _field_path(location: tuple[int | str, ...]) -> str:
    # pydantic marks an invalid mapping key with a trailing "[key]"; the key itself names it.
    return ".".join(str(part) for part in location if part != "[key]")


def _first_error(error: ValidationError) -> InputError:
    detail = error.errors()[0]
    kind = detail["type"]
    message = str(detail["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "string_pattern_mismatch":
        message = f"not a Kubernetes label key: {detail['input']!r}"
    return InputError(message, field=_field_path(tuple(detail["loc"])))


def parse_config(data: Any, source: str) -> ConfigFile:
    """A parsed YAML document -> ConfigFile; raises InputError naming the source and field."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(
            "must be a mapping with pricing, discovery, metrics, api, router, prometheus and "
            "calibration",
            source=source,
        )
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as error:
        found = _first_error(error)
        raise InputError(found.detail, source=source, field=found.field) from None


def load_config_file(path: str | Path) -> ConfigFile:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(
            f"cannot read the configuration file: {error.strerror}", source=source
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise InputError(f"not valid YAML: {first_line}", source=source) from None
    return parse_config(data, source)
