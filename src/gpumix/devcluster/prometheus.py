"""The dev cluster's Prometheus: configuration and command line (pure: values in, text out).

Prometheus discovers gpumix's pods through the Kubernetes API (``kubernetes_sd_configs``, role
pod, with the admin kubeconfig) exactly as it would in a real cluster, and scrapes each pod that
asks for it with the ``prometheus.io/scrape|port|path`` annotations the operator puts on its pod
templates. Pod IPs are loopback addresses in the dev cluster, so every scrape stays on
127.0.0.0/8.

Every sample carries the pod's namespace and name and gpumix's pod labels, so PromQL can group
by configuration: ``service``, ``deployment``, ``pool``, ``gpu_type``, ``capacity_type``,
``tensor_parallel``, ``weight_format`` (from ``gpumix.io/<name>``), and ``component``
(``app.kubernetes.io/component``: ``inference-server`` or ``router``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SCRAPE_INTERVAL_SECONDS = 5
JOB_NAME = "gpumix-pods"

_POD_LABEL = "__meta_kubernetes_pod_label_"
_POD_ANNOTATION = "__meta_kubernetes_pod_annotation_"


def scrape_config(kubeconfig: Path) -> dict[str, Any]:
    """The one scrape job: gpumix's Running pods that carry ``prometheus.io/scrape: "true"``."""
    return {
        "job_name": JOB_NAME,
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": [
            {
                "source_labels": [f"{_POD_LABEL}app_kubernetes_io_part_of"],
                "regex": "gpumix",
                "action": "keep",
            },
            {
                "source_labels": [f"{_POD_ANNOTATION}prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            # A Pending pod has no IP yet, a Succeeded/Failed one serves nothing.
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "Running",
                "action": "keep",
            },
            # One target per pod: the annotated port, whatever ports the containers declare.
            {
                "source_labels": ["__address__", f"{_POD_ANNOTATION}prometheus_io_port"],
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {
                "source_labels": [f"{_POD_ANNOTATION}prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_uid"], "target_label": "pod_uid"},
            {
                "source_labels": [f"{_POD_LABEL}app_kubernetes_io_component"],
                "target_label": "component",
            },
            {"action": "labelmap", "regex": f"{_POD_LABEL}gpumix_io_(.+)", "replacement": "$1"},
        ],
    }


def config_text(kubeconfig: Path) -> str:
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_SECONDS - 1}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
        },
        "scrape_configs": [scrape_config(kubeconfig)],
    }
    return yaml.safe_dump(config, sort_keys=False)


def argv(binary: str, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        # A dev cluster's metrics are worth a day at most; keep the disk small.
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
