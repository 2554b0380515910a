"""The router's settings: each from its flag, else its ``GPUMIX_ROUTER_*`` variable, else a default.

=====================  =================================  ===========================
flag                   environment variable               default
=====================  =================================  ===========================
``--namespace``        ``GPUMIX_ROUTER_NAMESPACE``        required
``--service``          ``GPUMIX_ROUTER_SERVICE``          required (LLMService name)
``--host``             ``GPUMIX_ROUTER_HOST``             ``0.0.0.0``
``--port``             ``GPUMIX_ROUTER_PORT``             ``8000``
``--kubeconfig``       ``GPUMIX_ROUTER_KUBECONFIG``       in-cluster, else ``$KUBECONFIG``
``--connect-timeout``  ``GPUMIX_ROUTER_CONNECT_TIMEOUT``  ``2`` seconds (then: retry)
``--retry-after``      ``GPUMIX_ROUTER_RETRY_AFTER``      ``1`` second (503 Retry-After)
``--backend-port``     ``GPUMIX_ROUTER_BACKEND_PORT``     ``8000`` (pods without a port)
=====================  =================================  ===========================

A bad value raises :class:`~gpumix.errors.InputError` naming the flag, or the variable when the
value came from the environment (the CLI prints it as one line and exits 2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gpumix.errors import InputError

ENV_PREFIX = "GPUMIX_ROUTER_"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_PORT = 65535
MAX_DNS_LABEL = 63

T = TypeVar("T")


@dataclass(frozen=True)
class RouterSettings:
    namespace: str
    service: str
    kubeconfig: str | None = None
    connect_timeout_seconds: float = 2.0
    retry_after_seconds: int = 1
    # Port for pods whose container declares none (vLLM's default).
    backend_port: int = 8000


@dataclass(frozen=True)
class ListenAddress:
    host: str = "0.0.0.0"
    port: int = 8000


def _dns_label(text: str) -> str:
    if len(text) > MAX_DNS_LABEL or not DNS_LABEL.match(text):
        raise ValueError(f"must be a DNS label (lower-case letters, digits, '-'), got {text!r}")
    return text


def _port(text: str, *, allow_zero: bool) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a port number: {text!r}") from None
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_PORT:
        raise ValueError(f"must be between {low} and {MAX_PORT}, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive number of seconds, got {text}")
    return value


def _whole_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number of seconds: {text!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative, got {text}")
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


class _Resolver:
    def __init__(self, flags: Mapping[str, str | None], environ: Mapping[str, str]) -> None:
        self.flags = flags
        self.environ = environ

    def get(self, name: str, parse: Callable[[str], T], default: T | None = None) -> T:
        """``--name``, else ``GPUMIX_ROUTER_NAME``, else ``default`` (required when None)."""
        flag = f"--{name}"
        variable = ENV_PREFIX + name.upper().replace("-", "_")
        raw, source = self.flags.get(name), flag
        if raw is None:
            raw, source = self.environ.get(variable), variable
        if raw is None:
            if default is None:
                raise InputError(f"required (or set {variable})", field=flag)
            return default
        try:
            return parse(raw)
        except ValueError as error:
            raise InputError(str(error), field=source) from None


def resolve_settings(
    flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> tuple[RouterSettings, ListenAddress]:
    """Settings from flag values (``None`` = not given, keyed by flag name without dashes)
    and the environment."""
    get = _Resolver(flags, environ).get
    settings = RouterSettings(
        namespace=get("namespace", _dns_label),
        service=get("service", _dns_label),
        kubeconfig=get("kubeconfig", _non_empty, "") or None,
        connect_timeout_seconds=get("connect-timeout", _positive_seconds, 2.0),
        retry_after_seconds=get("retry-after", _whole_seconds, 1),
        backend_port=get("backend-port", lambda text: _port(text, allow_zero=False), 8000),
    )
    listen = ListenAddress(
        host=get("host", _non_empty, "0.0.0.0"),
        port=get("port", lambda text: _port(text, allow_zero=True), 8000),
    )
    return settings, listen
