"""The Kubernetes adapter's error mapping: what the planner can rely on catching."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3.exceptions
from kubernetes import client

from gpumix.operator.kube import Kube, KubeError


@pytest.mark.parametrize(
    "failure",
    [
        urllib3.exceptions.MaxRetryError(None, "/apis/apps/v1", reason=None),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()),
        ConnectionRefusedError("connection refused"),
    ],
)
def test_unanswered_requests_become_kube_errors_with_status_0(failure: Exception) -> None:
    kube = Kube(client.ApiClient())

    def fail(*_: Any, **__: Any) -> Any:
        raise failure

    kube.core.list_namespaced_service_account = fail
    with pytest.raises(KubeError) as raised:
        kube.list_children("team-a", "chat")
    assert raised.value.status == 0
    assert "list ServiceAccounts in team-a" in str(raised.value)
