"""The pod runner's bookkeeping: which pods get a server, keyed by UID, with kwok's IP reuse.

The servers here are real TCP listeners on loopback addresses, so "address in use" is the
kernel's answer, not a mock's."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from gpumix.devcluster import podrunner
from gpumix.devcluster.podrunner import PodRunner, desired_workload


def pod(
    uid: str,
    ip: str | None,
    *,
    phase: str = "Running",
    kind: str = "vllm",
    port: int = 8000,
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "uid": uid,
        "name": f"pod-{uid}",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/name": kind, "app.kubernetes.io/part-of": "gpumix"},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": metadata,
        "spec": {
            "containers": [{"name": "vllm", "ports": [{"name": "http", "containerPort": port}]}]
        },
        "status": status,
    }


class Listener:
    """A real TCP server on (host, port), recording which pod it was started for."""

    def __init__(self, server: asyncio.Server, uid: str):
        self.server = server
        self.uid = uid

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def recording_starter(started: list[str]) -> podrunner.Starter:
    async def start(pod: dict[str, Any], container: dict[str, Any], host: str, port: int) -> Any:
        uid = pod["metadata"]["uid"]

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(uid.encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, host, port, reuse_address=True)
        started.append(uid)
        return Listener(server, uid)

    return start


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def who_answers(host: str, port: int) -> str | None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    data = await reader.read()
    writer.close()
    return data.decode()


def test_only_running_pods_with_an_ip_of_a_known_kind_are_served() -> None:
    kinds = {"vllm"}
    assert desired_workload(pod("a", "127.64.0.2"), kinds) is not None
    assert desired_workload(pod("a", None, phase="Pending"), kinds) is None
    assert desired_workload(pod("a", "127.64.0.2", phase="Succeeded"), kinds) is None
    assert desired_workload(pod("a", "127.64.0.2", deleting=True), kinds) is None
    assert desired_workload(pod("a", "127.64.0.2", kind="postgres"), kinds) is None
    workload = desired_workload(pod("a", "127.64.0.2", port=9000), kinds)
    assert workload is not None and (workload.ip, workload.port) == ("127.64.0.2", 9000)


def test_a_reused_ip_is_answered_by_the_new_pod_not_its_predecessor() -> None:
    async def scenario() -> None:
        started: list[str] = []
        runner = PodRunner({"vllm": recording_starter(started)})
        port = free_port()
        ip = "127.64.0.7"
        await runner.observe(pod("old", ip, port=port))
        assert await who_answers(ip, port) == "old"
        # kwok frees the IP and gives it to the next pod; the runner sees the new pod first.
        await runner.observe(pod("new", ip, port=port))
        assert "new" not in runner.running  # the old listener still holds the address
        await runner.forget("old")
        assert await who_answers(ip, port) == "new"
        assert started == ["old", "new"]
        await runner.stop_all()
        assert await who_answers(ip, port) is None

    asyncio.run(scenario())


def test_a_failed_bind_is_retried_until_the_address_is_free() -> None:
    async def scenario() -> None:
        started: list[str] = []
        runner = PodRunner({"vllm": recording_starter(started)})
        port = free_port()
        ip = "127.64.0.9"
        blocker = await asyncio.start_server(lambda r, w: None, ip, port)
        await runner.observe(pod("p", ip, port=port))
        assert started == []
        blocker.close()
        await blocker.wait_closed()
        for _ in range(50):
            if started:
                break
            await asyncio.sleep(0.1)
        assert started == ["p"]
        assert await who_answers(ip, port) == "p"
        await runner.stop_all()

    asyncio.run(scenario())


def test_a_relist_stops_servers_of_pods_that_vanished_while_the_watch_was_down() -> None:
    async def scenario() -> None:
        runner = PodRunner({"vllm": recording_starter([])})
        port_a, port_b = free_port(), free_port()
        await runner.observe(pod("a", "127.64.0.11", port=port_a))
        await runner.observe(pod("b", "127.64.0.12", port=port_b))
        await runner.replace_all([pod("b", "127.64.0.12", port=port_b)])
        assert await who_answers("127.64.0.11", port_a) is None
        assert await who_answers("127.64.0.12", port_b) == "b"
        await runner.stop_all()

    asyncio.run(scenario())


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_pod_that_stops_running_stops_answering(phase: str) -> None:
    async def scenario() -> None:
        runner = PodRunner({"vllm": recording_starter([])})
        port = free_port()
        await runner.observe(pod("a", "127.64.0.13", port=port))
        await runner.observe(pod("a", "127.64.0.13", port=port, phase=phase))
        assert await who_answers("127.64.0.13", port) is None

    asyncio.run(scenario())


def test_a_pod_whose_server_cannot_start_is_not_retried_until_it_changes() -> None:
    calls: list[str] = []

    async def refuse(pod: dict[str, Any], container: dict[str, Any], host: str, port: int) -> Any:
        calls.append(pod["metadata"]["uid"])
        raise ValueError("--max-model-len: not a number")

    async def scenario() -> None:
        runner = PodRunner({"vllm": refuse})
        await runner.observe(pod("a", "127.64.0.14"))
        await runner.observe(pod("a", "127.64.0.14"))  # a status update of the same pod
        await asyncio.sleep(podrunner.RETRY_SECONDS * 1.5)
        assert calls == ["a"]
        await runner.observe(pod("a", "127.64.0.15"))  # the pod changed: try again
        assert calls == ["a", "a"]

    asyncio.run(scenario())


def test_flag_values_read_a_router_command_line() -> None:
    from gpumix.devcluster.podrunner import flag_values

    args = ["router", "--namespace", "team-a", "--service", "chat", "--port", "8000", "--x"]
    assert flag_values(args) == {"--namespace": "team-a", "--service": "chat", "--port": "8000"}
