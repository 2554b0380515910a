"""The plan API served from its thread on a real socket, as the operator starts it."""

from __future__ import annotations

import socket

import httpx
import pytest

from api_support import FixtureSource
from gpumix.api import create_app
from gpumix.api.server import start_api_server


def test_the_server_answers_on_its_port_and_stops() -> None:
    server = start_api_server(create_app(FixtureSource()), 0, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}"
        response = httpx.get(f"{url}/api/v1/services", timeout=10)
        assert response.status_code == 200
        assert response.json()["services"][0]["name"] == "chat"
        answer = httpx.post(f"{url}/api/v1/whatif", json={"removedPools": ["l4-spot"]}, timeout=30)
        assert answer.status_code == 200
    finally:
        server.stop()
    assert not server.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/v1/services", timeout=2)


def test_a_taken_port_is_an_error_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            start_api_server(create_app(FixtureSource()), port, host="127.0.0.1")
