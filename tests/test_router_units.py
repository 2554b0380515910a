"""The router's pure parts: class estimate, plan-weighted choice, routing table from the API's
objects, settings."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gpumix.errors import InputError
from gpumix.router.choose import Chooser, SmoothWeighted, least_in_flight
from gpumix.router.classify import chat_size, completion_size, nearest_class
from gpumix.router.settings import resolve_settings
from gpumix.router.table import PlanEntry, RequestClass, RoutingMode, RoutingTable
from gpumix.router.watcher import pod_endpoint, routing_from_llmservice

CLASSES = (RequestClass("chat", 512, 256), RequestClass("rag", 4096, 256))
PLAN = (
    PlanEntry("h100", {"chat": 0.43, "rag": 0.99}),
    PlanEntry("l4", {"chat": 0.57, "rag": 0.01}),
)


def table(pods: dict[str, tuple[str, ...]], mode: RoutingMode = RoutingMode.PLAN_WEIGHTED):
    return RoutingTable(classes=CLASSES, entries=PLAN, ready_pods=pods, mode=mode)


# -- class estimate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "x" * 2000, "max_tokens": 256}, "chat"),  # 500 tokens
        ({"prompt": "x" * 16000, "max_tokens": 256}, "rag"),  # 4000 tokens
        ({"prompt": list(range(3000)), "max_tokens": 200}, "rag"),  # token ids: exact
        ({"prompt": "short"}, "chat"),  # no max_tokens: the documented default
    ],
)
def test_completions_go_to_the_nearest_class_in_log_space(body: dict, expected: str) -> None:
    assert nearest_class(completion_size(body), CLASSES).name == expected


def test_chat_messages_are_counted_from_their_text() -> None:
    long = {"messages": [{"role": "user", "content": "y" * 15000}], "max_tokens": 256}
    short = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert nearest_class(chat_size(long), CLASSES).name == "rag"
    assert nearest_class(chat_size(short), CLASSES).name == "chat"
    assert chat_size(long).input_tokens > 3700


def test_a_malformed_body_is_sized_not_refused() -> None:
    size = completion_size({"prompt": None, "max_tokens": True})
    assert size.input_tokens >= 1 and size.output_tokens > 0


# -- choice -------------------------------------------------------------------------------------


def test_smooth_weights_give_each_name_its_share_within_one_pick() -> None:
    draw = SmoothWeighted()
    picks = Counter(draw(["a", "b", "c"], [0.5, 0.3, 0.2]) for _ in range(97))
    for name, weight in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(picks[name] - 97 * weight) <= 1


def test_realised_class_shares_follow_the_plan_within_a_point() -> None:
    chooser = Chooser(random.Random(1))
    routing = table({"h100": ("10.0.0.1:8000",), "l4": ("10.0.0.2:8000", "10.0.0.3:8000")})
    for class_name, plan_share in (("chat", 0.57), ("rag", 0.01)):
        picks = [chooser.pick(routing, class_name, {}) for _ in range(300)]
        to_l4 = sum(1 for pick in picks if pick is not None and pick.deployment == "l4")
        assert abs(to_l4 / 300 - plan_share) <= 0.01


def test_a_configuration_without_ready_pods_hands_its_share_to_the_others() -> None:
    chooser = Chooser(random.Random(1))
    routing = table({"h100": ("10.0.0.1:8000",), "l4": ()})
    picks = {chooser.pick(routing, "chat", {}).deployment for _ in range(50)}  # type: ignore[union-attr]
    assert picks == {"h100"}


def test_no_ready_pod_anywhere_is_no_pick() -> None:
    assert Chooser().pick(table({}), "chat", {}) is None


def test_within_a_configuration_the_least_busy_pod_wins() -> None:
    pods = ("a:1", "b:1", "c:1")
    assert least_in_flight(pods, {"a:1": 3, "b:1": 1, "c:1": 2}, random.Random(0)) == "b:1"
    routing = table({"h100": ("a:1", "b:1"), "l4": ()})
    assert Chooser().pick(routing, "rag", {"a:1": 5, "b:1": 0}).pod == "b:1"  # type: ignore[union-attr]


def test_round_robin_ignores_classes_and_cycles_over_every_ready_pod() -> None:
    chooser = Chooser(random.Random(0))
    routing = table({"h100": ("a:1",), "l4": ("b:1", "c:1")}, RoutingMode.ROUND_ROBIN)
    picks = Counter(chooser.pick(routing, "rag", {}).pod for _ in range(30))  # type: ignore[union-attr]
    assert picks == {"a:1": 10, "b:1": 10, "c:1": 10}


# -- the routing table from the API ------------------------------------------------------------


def llmservice(mode: str | None = None) -> dict:
    spec: dict = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "workload": {
            "requestsPerSecond": "4",
            "classes": [
                {"name": "chat", "inputTokens": 512, "outputTokens": 256, "share": 70},
                {"name": "rag", "inputTokens": 4096, "outputTokens": 256, "share": 30},
            ],
        },
    }
    if mode:
        spec["routing"] = {"mode": mode}
    return {
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": spec,
        "status": {
            "plan": [
                {"deployment": "chat-h100", "assignment": {"chat": "0.43", "rag": "0.99"}},
                {"deployment": "chat-l4", "assignment": {"chat": "0.57", "rag": "0.01"}},
            ]
        },
    }


def test_classes_plan_and_mode_are_read_from_the_llmservice() -> None:
    classes, entries, mode = routing_from_llmservice(llmservice("RoundRobin"))
    assert [c.name for c in classes] == ["chat", "rag"]
    assert {e.deployment: e.weight("rag") for e in entries} == {"chat-h100": 0.99, "chat-l4": 0.01}
    assert mode is RoutingMode.ROUND_ROBIN
    assert routing_from_llmservice(llmservice())[2] is RoutingMode.PLAN_WEIGHTED


def test_an_unknown_routing_mode_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec.routing.mode"):
        routing_from_llmservice(llmservice("Fastest"))


def pod(ready: bool, deleting: bool = False) -> dict:
    metadata: dict = {"name": "p", "labels": {"gpumix.io/deployment": "chat-l4"}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {
            "phase": "Running",
            "podIP": "127.64.3.1",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_only_ready_pods_that_are_not_terminating_are_endpoints() -> None:
    assert pod_endpoint(pod(ready=True), 8000) == ("chat-l4", "127.64.3.1:8000")
    assert pod_endpoint(pod(ready=False), 8000) is None
    assert pod_endpoint(pod(ready=True, deleting=True), 8000) is None


# -- settings -----------------------------------------------------------------------------------


def test_settings_come_from_flags_then_the_environment() -> None:
    settings, listen = resolve_settings(
        {"namespace": "team-a", "service": None, "port": "9000"},
        {"GPUMIX_ROUTER_SERVICE": "chat", "GPUMIX_ROUTER_PORT": "1"},
    )
    assert (settings.namespace, settings.service, listen.port) == ("team-a", "chat", 9000)


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        ({"namespace": "team-a", "service": "chat", "port": "70000"}, {}, "--port"),
        ({"namespace": "Team_A", "service": "chat"}, {}, "--namespace"),
        ({"namespace": "team-a"}, {"GPUMIX_ROUTER_SERVICE": ""}, "GPUMIX_ROUTER_SERVICE"),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_flag_or_variable(
    flags: dict, environ: dict, named: str
) -> None:
    with pytest.raises(InputError) as raised:
        resolve_settings(flags, environ)
    message = raised.value.one_line()
    assert named in message and "\n" not in message
