"""The security contexts of gpumix's pods: what the ``restricted`` Pod Security Standard asks.

A namespace labelled ``pod-security.kubernetes.io/enforce=restricted`` admits a pod only when
it runs as non-root (``runAsNonRoot`` and a non-zero ``runAsUser``), cannot gain privileges
(``allowPrivilegeEscalation: false``), drops every capability and uses the runtime's default
seccomp profile. Both the vLLM pods and the router pods meet it, so gpumix works in such a
namespace without an exception in the policy.

The user is numeric: ``runAsNonRoot`` with a user *name* from the image cannot be checked by
the kubelet, and the vLLM image defines no non-root user at all. 65532 is the distroless
``nonroot`` user, the one the gpumix image runs as.
"""

from __future__ import annotations

from typing import Any

NON_ROOT_UID = 65532


def pod_security_context(*, with_volumes: bool) -> dict[str, Any]:
    """The pod-level context. ``with_volumes``: the pod writes to volumes, so they are made
    group-writable for it (``fsGroup``); only where the owner differs, because a recursive
    chown of a model cache of hundreds of GB on every start would delay it by minutes."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
    }
    if with_volumes:
        context["fsGroup"] = NON_ROOT_UID
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def container_security_context(*, read_only_root: bool) -> dict[str, Any]:
    """The container-level context: no privilege escalation, no capabilities."""
    context: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if read_only_root:
        context["readOnlyRootFilesystem"] = True
    context["capabilities"] = {"drop": ["ALL"]}
    return context
