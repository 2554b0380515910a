"""Pure builders for the Kubernetes objects that serve one LLMService: plain dicts out.

One plan entry (pool × tensor-parallel size × weight format) becomes one vLLM Deployment and one
Service of the same name (for the class-aware router); the LLMService gets one Service over all
its replicas. Nothing here calls the API or imports a Kubernetes client: the reconciler compares
:data:`SPEC_HASH_ANNOTATION` on the live object with the one on the built object and writes only
when they differ (after dask-kubernetes' ``build_worker_deployment_spec``).

Names and label values are deterministic functions of the LLMService name and the plan entry, so
a re-plan that keeps a configuration keeps its Deployment (and its warm replicas).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpumix.operator.pod_security import container_security_context, pod_security_context
from gpumix.perf.constants import MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS
from gpumix.resources import LLMService
from gpumix.resources.llmservice import EnvVar, ModelCacheSpec
from gpumix.resources.owned import HF_HOME_ENV, HOME_ENV, USER_ENV
from gpumix.solver.model import PlanEntry

SPEC_HASH_ANNOTATION = "gpumix.io/spec-hash"
COST_ANNOTATION = "gpumix.io/cost-per-hour"
ASSIGNMENT_ANNOTATION = "gpumix.io/assignment"
CAPACITY_ANNOTATION = "gpumix.io/capacity-rps"
MANAGED_BY = "gpumix"

LABEL_SERVICE = "gpumix.io/service"
LABEL_POOL = "gpumix.io/pool"
LABEL_GPU_TYPE = "gpumix.io/gpu-type"
LABEL_CAPACITY_TYPE = "gpumix.io/capacity-type"
LABEL_TENSOR_PARALLEL = "gpumix.io/tensor-parallel"
LABEL_WEIGHT_FORMAT = "gpumix.io/weight-format"
# The Deployment a pod belongs to; with LABEL_SERVICE it is the whole (immutable) selector.
LABEL_DEPLOYMENT = "gpumix.io/deployment"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

APP_NAME = "vllm"
COMPONENT = "inference-server"
CONTAINER_NAME = "vllm"
PORT_NAME = "http"
GPU_RESOURCE = "nvidia.com/gpu"

OWNER_API_VERSION = "gpumix.io/v1alpha1"
OWNER_KIND = "LLMService"

# Every GPU node pool we have seen taints its nodes with nvidia.com/gpu (GKE, EKS AMIs, the GPU
# operator's recommendation); tolerating it is harmless where the taint is absent.
GPU_TOLERATION: Mapping[str, str] = {
    "key": GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}

# Downloading and loading weights (140 GB for a 70B model in bf16) takes 20+ minutes on a cold
# node; the startup probe holds liveness off for up to 10 s × 180 = 30 minutes.
STARTUP_PROBE_PERIOD_SECONDS = 10
STARTUP_PROBE_FAILURE_THRESHOLD = 180

# Per GPU, sized to fit the smallest GPU nodes the catalogue covers (g4dn/g5/g6.xlarge and GKE
# g2-standard-4: 4 vCPU, 16 GiB for one GPU). Tokenisation and the scheduler need CPU; loading
# safetensors needs host memory. No CPU limit (throttling shows up directly as TTFT) and no memory
# limit (a limit hit during weight loading kills a replica that took 20 minutes to start).
CPU_REQUEST_PER_GPU = 2
MEMORY_REQUEST_GIB_PER_GPU = 8

# NCCL's shared-memory transport between tensor-parallel ranks needs more than Docker's 64 MiB
# default /dev/shm; 2 GiB is what vLLM's Kubernetes guide uses. Memory-backed, so it counts
# towards the pod's memory.
SHM_SIZE_LIMIT = "2Gi"
SHM_VOLUME = "dshm"

# The pods run as a numeric user the vLLM image does not know (operator.pod_security), and
# vLLM writes below HOME: compile caches (~/.cache/vllm, ~/.triton), usage stats
# (~/.config/vllm) and, by default, the weights (HF_HOME). The image's HOME is /root, which
# that user cannot write, so HOME is a per-pod emptyDir. No size limit: a limit below what the
# caches and weights need gets the pod evicted mid-download, after minutes of work; without one
# it is what the container's writable layer was when vLLM ran as root. USER is set because
# PyTorch names its inductor cache after getpass.getuser(), which fails for a user id without
# a passwd entry and USER unset.
HOME_VOLUME = "home"
HOME_PATH = "/home/vllm"
USER_NAME = "vllm"
DEFAULT_HF_HOME = f"{HOME_PATH}/.cache/huggingface"
# spec.serving.modelCache, when set: HF_HOME on its own volume at a fixed path.
MODEL_CACHE_VOLUME = "model-cache"
MODEL_CACHE_PATH = "/model-cache"

# vLLM flags per weight format.
#   bf16: the checkpoint as published, computed in bfloat16.
#   fp8:  vLLM quantizes a bf16 checkpoint to FP8 on load (dynamic per-tensor scales); a
#         pre-quantized FP8 checkpoint is used as is. W8A8 on Ada/Hopper, weight-only (Marlin)
#         on Ampere.
#   int8, int4: vLLM has no general on-load int8/int4 quantization (bitsandbytes on-load is
#         NF4 and slow; experts_int8 is for MoE only). These formats need a pre-quantized
#         checkpoint (compressed-tensors W8A8 / W4A16, AWQ, GPTQ): spec.model.name must name it,
#         and vLLM reads the method from the checkpoint's quantization_config. Forcing a
#         `--quantization awq|gptq` flag here would break the other checkpoint kinds, so none is
#         passed. A bf16 checkpoint planned as int4 loads in bf16 and will not fit where the
#         planner put it: the operator should only offer these formats for quantized models.
WEIGHT_FORMAT_ARGS: Mapping[str, tuple[str, ...]] = {
    "bf16": ("--dtype", "bfloat16"),
    "fp8": ("--quantization", "fp8"),
    "int8": (),
    "int4": (),
}

MAX_NAME_LENGTH = 63  # DNS-1035 label: the Service shares the Deployment's name
_HASH_LENGTH = 8
_DNS_INVALID = re.compile(r"[^a-z0-9-]")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_VALUE_INVALID = re.compile(r"[^-A-Za-z0-9_.]")


@dataclass(frozen=True)
class PoolPlacement:
    """Where a pool's pods go: its node selector, the label keys its nodes must not carry
    (a required ``DoesNotExist`` node affinity) and the tolerations its nodes need."""

    name: str
    gpu_type: str
    capacity_type: str
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...] = ()
    excluded_label_keys: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Names and labels


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def dns_label(raw: str) -> str:
    """``raw`` if it is a valid DNS-1035 label, else a valid one with a stable hash of ``raw``.

    The hash keeps names that differ only in invalid characters or beyond the length limit
    (``a.b`` and ``a-b``; two long names with a common prefix) from colliding.
    """
    if len(raw) <= MAX_NAME_LENGTH and _DNS_LABEL.match(raw):
        return raw
    cleaned = _DNS_INVALID.sub("-", raw.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"x-{cleaned}"
    head = cleaned[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{_short_hash(raw)}"


def label_value(raw: str) -> str:
    """``raw`` if it is a valid label value, else a valid one with a stable hash of ``raw``."""
    if len(raw) <= MAX_NAME_LENGTH and _LABEL_VALUE.match(raw):
        return raw
    cleaned = _LABEL_VALUE_INVALID.sub("-", raw).strip("-_.")
    head = cleaned[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-_.")
    return f"{head}-{_short_hash(raw)}" if head else _short_hash(raw)


def deployment_name(service_name: str, entry: PlanEntry) -> str:
    """``<service>-<pool>-tp<k>-<format>``, e.g. ``chat-l4-spot-tp1-bf16``; DNS-1035, ≤ 63.

    Read from the right, tp and format are fixed; read from the left, the service ends at the
    first ``-`` only when its name has none. So a service whose name has a ``-`` gets a hash of
    the four parts as a suffix: ``chat`` on pool ``l4-spot`` and ``chat-l4`` on pool ``spot``
    would otherwise both be ``chat-l4-spot-tp1-bf16``, one service's apply overwriting the
    other's Deployment. (A readable name ends in the format; a hashed one in 8 hex digits.)
    """
    raw = f"{service_name}-{entry.pool}-tp{entry.tensor_parallel}-{entry.weight_format}"
    if "-" not in service_name:
        return dns_label(raw)
    parts = f"{service_name}/{entry.pool}/{entry.tensor_parallel}/{entry.weight_format}"
    head = dns_label(raw)[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{_short_hash(parts)}"


def service_name(service: LLMService) -> str:
    """Name of the Service over all replicas: the LLMService's name when it is a DNS label."""
    return dns_label(service.metadata.name)


def service_selector(service_name: str) -> dict[str, str]:
    """Labels on every pod of one LLMService (list/delete its Deployments with these)."""
    return {LABEL_NAME: APP_NAME, LABEL_SERVICE: label_value(service_name)}


def entry_selector(service_name: str, entry: PlanEntry) -> dict[str, str]:
    """The Deployment's selector: only labels that never change for a given Deployment name
    (the selector is immutable; GPU type or capacity type of a pool may be edited)."""
    return {
        **service_selector(service_name),
        LABEL_DEPLOYMENT: deployment_name(service_name, entry),
    }


def _common_labels(service: LLMService) -> dict[str, str]:
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: label_value(service.metadata.name),
        LABEL_COMPONENT: COMPONENT,
        LABEL_PART_OF: MANAGED_BY,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SERVICE: label_value(service.metadata.name),
    }


def _entry_labels(
    service: LLMService, entry: PlanEntry, placement: PoolPlacement
) -> dict[str, str]:
    return {
        **_common_labels(service),
        LABEL_DEPLOYMENT: deployment_name(service.metadata.name, entry),
        LABEL_POOL: label_value(placement.name),
        LABEL_GPU_TYPE: label_value(placement.gpu_type),
        LABEL_CAPACITY_TYPE: label_value(placement.capacity_type),
        LABEL_TENSOR_PARALLEL: str(entry.tensor_parallel),
        LABEL_WEIGHT_FORMAT: label_value(entry.weight_format),
    }


def _metadata(
    name: str,
    service: LLMService,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if service.metadata.namespace:
        metadata["namespace"] = service.metadata.namespace
    metadata["labels"] = dict(labels)
    metadata["annotations"] = dict(annotations or {})
    owner = owner_reference(service)
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return metadata


def owner_reference(service: LLMService) -> dict[str, Any] | None:
    """The controller reference that lets Kubernetes garbage-collect what gpumix built.

    None without a uid (files rendered offline): the API server rejects an owner reference with
    an empty uid, and objects from the operator always carry one.
    """
    if not service.metadata.uid:
        return None
    return {
        "apiVersion": OWNER_API_VERSION,
        "kind": OWNER_KIND,
        "name": service.metadata.name,
        "uid": service.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _decimal(value: float) -> str:
    """Money as a decimal string (API convention), without float noise: 0.87, 11.84, 2.4731."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def _share_map(values: Mapping[str, float], digits: int = 6) -> str:
    return json.dumps(
        {name: round(share, digits) for name, share in sorted(values.items())},
        separators=(",", ":"),
    )


def _plan_annotations(entry: PlanEntry) -> dict[str, str]:
    # For the router and for `kubectl describe`; kept off the pod template so that a re-plan
    # that only shifts traffic shares does not roll the pods.
    return {
        COST_ANNOTATION: _decimal(entry.cost_per_hour),
        # 3 decimals, as status records them: shares kept from status (solver.stability) then
        # give the same annotation as the pass that first chose them.
        ASSIGNMENT_ANNOTATION: _share_map(entry.assignment, digits=3),
        CAPACITY_ANNOTATION: _share_map(entry.capacity_rps),
    }


def spec_hash(obj: Mapping[str, Any]) -> str:
    """Stable hash of ``obj`` ignoring its own :data:`SPEC_HASH_ANNOTATION` (key order too)."""
    stripped = copy.deepcopy(dict(obj))
    annotations = stripped.get("metadata", {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(SPEC_HASH_ANNOTATION, None)
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _with_spec_hash(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(obj)
    return obj


# ---------------------------------------------------------------------------------------------
# The vLLM pod


def vllm_args(service: LLMService, entry: PlanEntry) -> list[str]:
    """The vLLM command line for one configuration (user extraArgs last, so they win)."""
    if entry.weight_format not in WEIGHT_FORMAT_ARGS:
        known = ", ".join(WEIGHT_FORMAT_ARGS)
        raise ValueError(f"unknown weight format {entry.weight_format!r} (expected {known})")
    model = service.spec.model
    serving = service.spec.serving
    # The LLMService name first: vLLM labels its metrics with the first served name, so per-
    # service dashboards work; the Hugging Face id stays accepted for OpenAI clients.
    served_names = [service.metadata.name]
    if model.name != service.metadata.name:
        served_names.append(model.name)
    return [
        "--model",
        model.name,
        "--served-model-name",
        *served_names,
        "--tensor-parallel-size",
        str(entry.tensor_parallel),
        "--max-model-len",
        str(model.max_model_len),
        # the scheduler limits the planner priced (gpumix.perf.constants), not vLLM's
        # defaults, which change with its version and the GPU
        "--max-num-seqs",
        str(MAX_NUM_SEQS),
        "--max-num-batched-tokens",
        str(MAX_NUM_BATCHED_TOKENS),
        *WEIGHT_FORMAT_ARGS[entry.weight_format],
        "--port",
        str(serving.port),
        *serving.extra_args,
    ]


def _http_probe(period: int, failure_threshold: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failure_threshold,
    }


def _container(service: LLMService, entry: PlanEntry) -> dict[str, Any]:
    serving = service.spec.serving
    gpus = entry.tensor_parallel
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": serving.image,
        # The module, not the image's entrypoint: vllm/vllm-openai moved its ENTRYPOINT from
        # this module to `vllm serve` (positional model) between releases; this form accepts
        # --model on every release gpumix supports.
        "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        "args": vllm_args(service, entry),
        "ports": [{"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"}],
        "env": [*_owned_env(serving.model_cache), *(_env_var(env) for env in serving.env)],
        "resources": {
            "requests": {
                "cpu": str(CPU_REQUEST_PER_GPU * gpus),
                "memory": f"{MEMORY_REQUEST_GIB_PER_GPU * gpus}Gi",
                GPU_RESOURCE: str(gpus),
            },
            # Extended resources must have limit == request; CPU and memory stay unlimited
            # (see CPU_REQUEST_PER_GPU).
            "limits": {GPU_RESOURCE: str(gpus)},
        },
        "startupProbe": _http_probe(
            STARTUP_PROBE_PERIOD_SECONDS, STARTUP_PROBE_FAILURE_THRESHOLD, timeout=5
        ),
        "readinessProbe": _http_probe(10, 3, timeout=5),
        # Generous: a replica busy with long prefills answers /health late, and restarting it
        # costs another full model load.
        "livenessProbe": _http_probe(20, 6, timeout=10),
    }
    container["volumeMounts"] = _volume_mounts(serving.model_cache, gpus)
    # restricted Pod Security; not a read-only root: vLLM, PyTorch and Triton write to /tmp
    container["securityContext"] = container_security_context(read_only_root=False)
    return container


def _owned_env(model_cache: ModelCacheSpec | None) -> list[dict[str, Any]]:
    hf_home = MODEL_CACHE_PATH if model_cache is not None else DEFAULT_HF_HOME
    return [
        {"name": HOME_ENV, "value": HOME_PATH},
        {"name": USER_ENV, "value": USER_NAME},
        {"name": HF_HOME_ENV, "value": hf_home},
    ]


def _env_var(env: EnvVar) -> dict[str, Any]:
    """One user variable as the API server stores it: an empty value and unset fields are left
    out (the server drops them, and a field it drops would read as a hand edit: drift)."""
    built: dict[str, Any] = {"name": env.name}
    if env.value_from is not None:
        built["valueFrom"] = env.value_from.model_dump(by_alias=True, exclude_none=True)
    elif env.value:
        built["value"] = env.value
    return built


def _volume_mounts(model_cache: ModelCacheSpec | None, gpus: int) -> list[dict[str, Any]]:
    mounts = [{"name": HOME_VOLUME, "mountPath": HOME_PATH}]
    if model_cache is not None:
        mounts.append({"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_PATH})
    if gpus > 1:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return mounts


def _volumes(model_cache: ModelCacheSpec | None, gpus: int) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": HOME_VOLUME, "emptyDir": {}}]
    if model_cache is not None:
        volumes.append({"name": MODEL_CACHE_VOLUME, **_model_cache_source(model_cache)})
    if gpus > 1:
        volumes.append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE_LIMIT}}
        )
    return volumes


def _model_cache_source(model_cache: ModelCacheSpec) -> dict[str, Any]:
    if model_cache.persistent_volume_claim is not None:
        return {
            "persistentVolumeClaim": {"claimName": model_cache.persistent_volume_claim.claim_name}
        }
    empty_dir = model_cache.empty_dir
    size_limit = empty_dir.size_limit if empty_dir is not None else None
    return {"emptyDir": {"sizeLimit": size_limit} if size_limit else {}}


def _tolerations(placement: PoolPlacement) -> list[dict[str, Any]]:
    tolerations: list[dict[str, Any]] = [dict(GPU_TOLERATION)]
    for toleration in placement.tolerations:
        cleaned = {key: value for key, value in toleration.items() if value is not None}
        if cleaned not in tolerations:
            tolerations.append(cleaned)
    return tolerations


def _node_affinity(placement: PoolPlacement) -> dict[str, Any] | None:
    """A required node affinity keeping the pods off nodes with an excluded label, or None.

    A discovered on-demand pool of nodes without a capacity-type label selects by GPU type
    alone, which spot nodes of that type also match; this keeps its pods off those nodes.
    """
    keys = list(dict.fromkeys(placement.excluded_label_keys))
    if not keys:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": key, "operator": "DoesNotExist"} for key in keys]}
                ]
            }
        }
    }


def build_deployment(
    service: LLMService, entry: PlanEntry, placement: PoolPlacement
) -> dict[str, Any]:
    """The vLLM Deployment for one plan entry, with its spec-hash annotation."""
    name = deployment_name(service.metadata.name, entry)
    labels = _entry_labels(service, entry, placement)
    port = service.spec.serving.port
    model_cache = service.spec.serving.model_cache
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(with_volumes=True),
        "containers": [_container(service, entry)],
        "nodeSelector": dict(sorted(placement.node_selector.items())),
        "tolerations": _tolerations(placement),
        # Service links would inject e.g. VLLM_PORT=tcp://… for a Service named "vllm", which
        # vLLM reads as its own setting and fails on.
        "enableServiceLinks": False,
        # vLLM finishes in-flight requests on SIGTERM; long generations need the time.
        "terminationGracePeriodSeconds": 60,
    }
    affinity = _node_affinity(placement)
    if affinity is not None:
        pod_spec["affinity"] = affinity
    pod_spec["volumes"] = _volumes(model_cache, entry.tensor_parallel)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, service, labels, _plan_annotations(entry)),
        "spec": {
            "replicas": entry.replicas,
            "selector": {"matchLabels": entry_selector(service.metadata.name, entry)},
            # Never below the planned capacity during a rollout: a new replica must be ready
            # before an old one goes (GPU headroom for one extra replica is the price).
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    return _with_spec_hash(deployment)


# ---------------------------------------------------------------------------------------------
# Services


def _service_spec(selector: Mapping[str, str], port: int) -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": dict(selector),
        "ports": [
            {
                "name": PORT_NAME,
                "port": port,
                "targetPort": PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            }
        ],
    }


def build_service(service: LLMService, selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Service ``<name>``: the LLMService's OpenAI-compatible endpoint. It selects `selector`
    (the router's pods, once one is ready), else every vLLM replica of the LLMService."""
    labels = {**_common_labels(service), LABEL_COMPONENT: "endpoint"}
    chosen = selector if selector is not None else service_selector(service.metadata.name)
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service_name(service), service, labels),
        "spec": _service_spec(chosen, service.spec.serving.port),
    }
    return _with_spec_hash(obj)


def build_entry_service(
    service: LLMService, entry: PlanEntry, placement: PoolPlacement
) -> dict[str, Any]:
    """One Service per Deployment (same name), so a router can send each class where the plan
    says; the planned shares ride along as annotations."""
    name = deployment_name(service.metadata.name, entry)
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            name, service, _entry_labels(service, entry, placement), _plan_annotations(entry)
        ),
        "spec": _service_spec(
            entry_selector(service.metadata.name, entry), service.spec.serving.port
        ),
    }
    return _with_spec_hash(obj)
