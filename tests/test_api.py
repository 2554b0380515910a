"""The plan/what-if API through FastAPI's test client, over a source fed from fixtures and
planned with the real solver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_support import FixtureSource, fixture_pools, fixture_services
from gpumix.api import ApiSettings, create_app
from gpumix.api.problems import PROBLEM_JSON
from gpumix.planning import planning_inputs
from gpumix.solver import PlanningInputs, PlanResult, SolveOptions, solve

WHATIF = "/api/v1/whatif"


@pytest.fixture
def source() -> FixtureSource:
    return FixtureSource()


@pytest.fixture
def client(source: FixtureSource) -> Iterator[TestClient]:
    with TestClient(create_app(source)) as test_client:
        yield test_client


def service_answer(body: dict[str, Any], name: str = "chat") -> dict[str, Any]:
    return next(s for s in body["services"] if s["name"] == name)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"].startswith("/api/v1/problems/")
    return body


# -- what-if answers ----------------------------------------------------------------------------


def test_the_running_plan_uses_the_cheap_spot_pool(source: FixtureSource) -> None:
    # The premise of the what-ifs below: without it they would test nothing.
    pools = {entry.pool for entry in source.running[0].entries}
    assert pools == {"l4-spot"}


def test_removing_the_spot_pool_moves_the_replicas_and_prices_the_move(
    client: TestClient, source: FixtureSource
) -> None:
    response = client.post(WHATIF, json={"removedPools": ["l4-spot"]})
    assert response.status_code == 200, response.text
    body = response.json()
    chat = service_answer(body)
    assert chat["feasible"] and not chat["becomesInfeasible"]
    assert chat["plan"] and all(entry["pool"] != "l4-spot" for entry in chat["plan"])

    # The same fleet without the pool, planned directly, is what the what-if must predict.
    pools = [h for h in fixture_pools() if h.pool.name != "l4-spot"]
    expected = solve(
        planning_inputs([(s, None) for s in fixture_services()], pools),
        SolveOptions(time_limit_seconds=10),
    ).services[0]
    assert chat["costPerHour"] == pytest.approx(expected.cost_per_hour, abs=1e-3)
    running = source.running[0]
    assert chat["runningCostPerHour"] == pytest.approx(running.cost_per_hour, abs=1e-3)
    assert chat["costDeltaPerHour"] == pytest.approx(
        expected.cost_per_hour - (running.cost_per_hour or 0), abs=1e-3
    )
    assert body["costDeltaPerHour"] == pytest.approx(chat["costDeltaPerHour"], abs=1e-3)

    changes = {(c["pool"], c["tensorParallel"], c["weightFormat"]): c for c in chat["changes"]}
    for entry in running.entries:
        removed = changes[entry.pool, entry.tensor_parallel, entry.weight_format]
        assert (removed["runningReplicas"], removed["plannedReplicas"]) == (entry.replicas, 0)
        assert removed["delta"] == -entry.replicas
    for entry in expected.entries:
        added = changes[entry.pool, entry.tensor_parallel, entry.weight_format]
        assert added["plannedReplicas"] == entry.replicas and added["delta"] == entry.replicas


def test_no_change_is_the_running_plan(client: TestClient) -> None:
    chat = service_answer(client.post(WHATIF, json={}).json())
    assert chat["changes"] == [] and chat["costDeltaPerHour"] == pytest.approx(0, abs=1e-3)


def test_zero_availability_is_like_removing_the_pool(client: TestClient) -> None:
    removed = service_answer(client.post(WHATIF, json={"removedPools": ["l4-spot"]}).json())
    empty = service_answer(
        client.post(WHATIF, json={"availability": [{"pool": "l4-spot", "availableGPUs": 0}]}).json()
    )
    # Equal cost; the configurations may differ where several cost the same.
    assert empty["costPerHour"] == pytest.approx(removed["costPerHour"], abs=1e-3)
    assert empty["plan"] and all(entry["pool"] != "l4-spot" for entry in empty["plan"])


def test_a_dearer_spot_price_moves_the_plan_and_is_what_it_costs(client: TestClient) -> None:
    body = client.post(
        WHATIF, json={"prices": [{"pool": "l4-spot", "pricePerGPUHour": "5.00"}]}
    ).json()
    chat = service_answer(body)
    assert all(entry["pool"] != "l4-spot" for entry in chat["plan"])
    assert chat["costDeltaPerHour"] > 0


def test_a_cheaper_gpu_type_lowers_the_cost_by_that_share(client: TestClient) -> None:
    body = client.post(WHATIF, json={"prices": [{"gpuType": "L4", "changePercent": -30}]}).json()
    chat = service_answer(body)
    # Same configurations (L4 stays the cheapest), 30 % cheaper.
    assert chat["changes"] == []
    assert chat["costPerHour"] == pytest.approx(0.7 * chat["runningCostPerHour"], rel=1e-3)


def test_more_demand_needs_more_replicas(client: TestClient) -> None:
    change = {"services": [{"namespace": "team-a", "name": "chat", "requestsPerSecond": "40"}]}
    chat = service_answer(client.post(WHATIF, json=change).json())
    assert sum(e["replicas"] for e in chat["plan"]) > sum(
        c["runningReplicas"] for c in chat["changes"]
    )
    assert chat["costDeltaPerHour"] > 0


def test_a_mix_heavier_in_long_prompts_costs_more(client: TestClient) -> None:
    mix = [{"name": "chat", "share": 1}, {"name": "rag", "share": 99}]
    change = {"services": [{"namespace": "team-a", "name": "chat", "classes": mix}]}
    chat = service_answer(client.post(WHATIF, json=change).json())
    assert chat["feasible"] and chat["costDeltaPerHour"] > 0


def test_a_new_service_is_priced_before_it_is_applied(client: TestClient) -> None:
    manifest = fixture_services()[0].model_dump(by_alias=True, mode="json", exclude={"status"})
    manifest["metadata"] = {"name": "summarise", "namespace": "team-b"}
    body = client.post(WHATIF, json={"manifests": [manifest]}).json()
    added = service_answer(body, "summarise")
    assert added["new"] and added["feasible"] and added["plan"]
    assert added["runningCostPerHour"] is None
    assert added["costDeltaPerHour"] == pytest.approx(added["costPerHour"])
    assert not service_answer(body, "chat")["new"]


def test_a_fleet_with_no_gpus_left_makes_the_service_infeasible_and_says_why(
    client: TestClient,
) -> None:
    availability = [{"pool": h.pool.name, "availableGPUs": 0} for h in fixture_pools()]
    body = client.post(WHATIF, json={"availability": availability}).json()
    chat = service_answer(body)
    assert chat["becomesInfeasible"] and not chat["feasible"]
    assert chat["plan"] == [] and chat["costPerHour"] is None
    assert "NoCapacity" in chat["reasonCodes"] and chat["reasons"]


# -- problems -----------------------------------------------------------------------------------


def test_a_bad_body_is_422_naming_the_field(client: TestClient) -> None:
    response = client.post(WHATIF, json={"prices": [{"pool": "l4-spot", "pricePerGPUHour": 1.5}]})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "prices[0].pricePerGPUHour"
    assert body["detail"].startswith("prices[0].pricePerGPUHour: ")


def test_an_unknown_key_is_422_naming_it(client: TestClient) -> None:
    body = assert_problem(client.post(WHATIF, json={"removePools": ["l4-spot"]}), 422)
    assert body["errors"][0]["field"] == "removePools"


def test_an_invalid_manifest_is_422_naming_its_field(client: TestClient) -> None:
    manifest = fixture_services()[0].model_dump(by_alias=True, mode="json", exclude={"status"})
    manifest["spec"]["workload"]["requestsPerSecond"] = 12
    body = assert_problem(client.post(WHATIF, json={"manifests": [manifest]}), 422)
    assert body["errors"][0]["field"] == "manifests[0].spec.workload.requestsPerSecond"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"removedPools": ["h100-spot"]}, "removedPools[0]"),
        ({"availability": [{"pool": "nope", "availableGPUs": 1}]}, "availability[0].pool"),
        ({"prices": [{"gpuType": "T4", "changePercent": 10}]}, "prices[0].gpuType"),
        ({"services": [{"namespace": "team-a", "name": "nope"}]}, "services[0].name"),
        (
            {"services": [{"namespace": "team-a", "name": "chat", "classes": [
                {"name": "code", "share": 10}]}]},
            "services[0].classes[0].name",
        ),
    ],
)  # fmt: skip
def test_a_change_naming_what_the_fleet_lacks_is_422_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    body = assert_problem(client.post(WHATIF, json=change), 422)
    assert body["errors"][0]["field"] == field


def test_an_unknown_service_is_a_404_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/api/v1/services/team-a/nope"), 404)
    assert "team-a/nope" in body["detail"]


def test_an_unknown_path_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/api/v1/nothing"), 404)


def test_an_oversized_body_is_413(source: FixtureSource) -> None:
    app = create_app(source, ApiSettings(max_body_bytes=200))
    padding = {"removedPools": ["l4-spot"] * 50}
    with TestClient(app) as small:
        assert_problem(small.post(WHATIF, json=padding), 413)
        # Without Content-Length (chunked), the body is counted as it arrives.
        chunks = (b'{"removedPools": [' + b'"l4-spot",' * 40 + b'"l4-spot"]}',)
        assert_problem(small.post(WHATIF, content=iter(chunks)), 413)
        assert small.post(WHATIF, json={}).status_code == 200


def test_a_what_if_before_the_first_plan_is_503() -> None:
    class Unplanned(FixtureSource):
        def planning_basis(self) -> None:  # type: ignore[override]
            return None

    with TestClient(create_app(Unplanned())) as unplanned:
        body = assert_problem(unplanned.post(WHATIF, json={}), 503)
        assert "Retry-After" in unplanned.post(WHATIF, json={}).headers
        assert body["detail"]


# -- time limit and one at a time ---------------------------------------------------------------


class RecordingSolver:
    """The real solver, recording the options it is given; ``hold`` keeps it from returning."""

    def __init__(self) -> None:
        self.options: list[SolveOptions] = []
        self.started = threading.Event()
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, inputs: PlanningInputs, options: SolveOptions) -> PlanResult:
        self.options.append(options)
        self.started.set()
        self.hold.wait(timeout=10)
        return solve(inputs, options)


def test_the_solver_gets_the_time_limit_capped_by_the_server() -> None:
    solver = RecordingSolver()
    app = create_app(FixtureSource(solver=solver), ApiSettings(whatif_time_limit_seconds=2))
    with TestClient(app) as client:
        client.post(WHATIF, json={"timeLimitSeconds": 100})
        client.post(WHATIF, json={"timeLimitSeconds": 0.5})
        body = client.post(WHATIF, json={}).json()
    assert [o.time_limit_seconds for o in solver.options] == [2, 0.5, 2]
    assert body["timeLimitSeconds"] == 2


def test_a_solve_that_overruns_its_time_limit_is_a_504_not_a_hang() -> None:
    solver = RecordingSolver()
    solver.hold.clear()
    settings = ApiSettings(whatif_time_limit_seconds=0.2, whatif_grace_seconds=0.3)
    with TestClient(create_app(FixtureSource(solver=solver), settings)) as client:
        started = time.monotonic()
        response = client.post(WHATIF, json={})
        elapsed = time.monotonic() - started
        solver.hold.set()
    body = assert_problem(response, 504)
    assert "0.5 s" in body["detail"]
    assert elapsed < 2.0


def test_a_second_what_if_while_one_runs_is_429_then_the_slot_frees() -> None:
    solver = RecordingSolver()
    solver.hold.clear()
    with TestClient(create_app(FixtureSource(solver=solver))) as client:
        first: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: first.update(r=client.post(WHATIF, json={})))
        thread.start()
        assert solver.started.wait(timeout=10)
        busy = client.post(WHATIF, json={})
        solver.hold.set()
        thread.join(timeout=20)
        after = client.post(WHATIF, json={})
    body = assert_problem(busy, 429)
    assert busy.headers["Retry-After"] == "10"
    assert "another what-if" in body["detail"]
    assert first["r"].status_code == 200 and after.status_code == 200


# -- reads and schema ---------------------------------------------------------------------------


def test_fleet_and_services_are_served_as_the_source_has_them(
    client: TestClient, source: FixtureSource
) -> None:
    fleet = client.get("/api/v1/fleet").json()
    assert [pool["name"] for pool in fleet["pools"]] == [h.pool.name for h in source.pools]
    assert fleet["pools"][0]["availableGPUs"] == source.pools[0].pool.available_gpus
    services = client.get("/api/v1/services").json()["services"]
    assert [(s["namespace"], s["name"]) for s in services] == [("team-a", "chat")]
    one = client.get("/api/v1/services/team-a/chat").json()
    assert one == services[0]


def test_the_openapi_schema_describes_every_endpoint_and_body(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert set(schema["paths"]) == {
        "/api/v1/fleet",
        "/api/v1/services",
        "/api/v1/services/{namespace}/{name}",
        "/api/v1/whatif",
    }
    components = schema["components"]["schemas"]
    assert "pricePerGPUHour" in components["PriceChange"]["properties"]
    assert "LLMService" in components
    assert client.get("/docs").status_code == 404  # no Swagger UI: it would load from a CDN
