"""The fleet planner: one background task that plans every LLMService jointly and reconciles.

Handlers only call :meth:`FleetPlanner.wake`. The loop batches wake-ups (debounce), snapshots
the kopf indices, builds the solver inputs and solves (in a thread, one solve at a time) only
when those inputs changed or the periodic timer is due, then reconciles every service: children
first, status and a PlanChanged event last. Everything that must survive a restart lives in the
API (children, their spec hashes, the LLMService status); memory only holds what can be
recomputed (the last inputs hash, migration deadlines, the causes of the last plan).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gpumix import catalog
from gpumix.autoscaling.prometheus import PrometheusLoadReader
from gpumix.autoscaling.recommend import Demand
from gpumix.errors import InputError
from gpumix.operator import events, indexes, inventory, manifests, reconcile, stalls, status
from gpumix.operator.calibration import CapacityCalibration
from gpumix.operator.demand import DemandTracker
from gpumix.operator.history import PlanChange, PlanHistory
from gpumix.operator.kube import Kube, KubeError
from gpumix.operator.metrics import OperatorMetrics, ServiceSample
from gpumix.operator.router_manifests import build_router_objects, router_name, router_selector
from gpumix.operator.settings import OperatorConfig
from gpumix.planning import NamespaceAdmission, ServiceToPlan, build_demands, service_demand
from gpumix.resources import GPUPool, LLMService, LLMServiceStatus, PlanEntryStatus
from gpumix.resources.gpupool import GPUPoolStatus
from gpumix.resources.llmservice import BaselineStatus
from gpumix.resources.meta import Condition
from gpumix.solver import (
    ConfigKey,
    CurrentPlan,
    PlanningInputs,
    PlanResult,
    ServiceDemand,
    ServiceKey,
    ServicePlan,
    SolveOptions,
    SolveStatus,
    solve,
)
from gpumix.solver.candidates import PoolHardware

logger = logging.getLogger(__name__)

DemandBuilder = Callable[
    [LLMService, Sequence[PoolHardware], CurrentPlan, NamespaceAdmission], ServiceDemand
]
Solver = Callable[[PlanningInputs, SolveOptions], PlanResult]

# After an unexpected failure of a whole pass, wait this long before the next one.
ERROR_BACKOFF_SECONDS = 5.0
# After the API refuses a service's child writes, retry the same writes after this long,
# doubling on each further refusal up to the maximum (a new target is tried at once).
APPLY_BACKOFF_SECONDS = 5.0
APPLY_BACKOFF_MAX_SECONDS = 300.0
RECONCILE_CONCURRENCY = 8  # services reconciled at once (below the API client's 10 connections)


def default_demand_builder(
    service: LLMService,
    pools: Sequence[PoolHardware],
    current_plan: CurrentPlan,
    admission: NamespaceAdmission,
) -> ServiceDemand:
    return service_demand(service, pools, current_plan=current_plan, admission=admission)


def default_demand_tracker(config: OperatorConfig) -> DemandTracker:
    url = config.prometheus_url
    reader = (
        PrometheusLoadReader(url, timeout_seconds=config.prometheus_timeout_seconds)
        if url
        else None
    )
    return DemandTracker(reader, url=url)


def remember(causes: dict[ServiceKey, str], key: ServiceKey, cause: str | None) -> None:
    """Add ``cause`` to what the next event of ``key`` will say."""
    if cause:
        causes[key] = f"{causes[key]}; {cause}" if key in causes else cause


def default_calibration(config: OperatorConfig, demand: DemandTracker) -> CapacityCalibration:
    reader = demand.reader if config.calibration_enabled else None
    return CapacityCalibration(reader if isinstance(reader, PrometheusLoadReader) else None)


def utc_now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: float) -> Decimal:
    return Decimal(f"{max(value, 0.0):.2f}")


@dataclass(frozen=True)
class Outcome:
    """The latest planning result for one service."""

    generation: int | None
    plan: ServicePlan | None  # None: no feasible plan for the current spec
    reason: str  # Feasible=False reason when plan is None
    messages: tuple[str, ...]
    pool_facts: Mapping[str, events.PoolFacts]


@dataclass(frozen=True)
class Snapshot:
    """The kopf indices at one moment, parsed and counted."""

    services: tuple[indexes.ServiceRecord, ...]
    pool_records: tuple[indexes.PoolRecord, ...]
    pools: tuple[inventory.PoolInventory, ...]
    pods: tuple[inventory.PodRecord, ...] = ()
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def admission(self) -> NamespaceAdmission:
        return NamespaceAdmission(
            selectors={
                pool.name: pool.definition.namespace_selector
                for pool in self.pools
                if pool.definition.namespace_selector is not None
            },
            namespace_labels=self.namespace_labels,
        )

    @property
    def pool_facts(self) -> dict[str, events.PoolFacts]:
        return {
            pool.name: events.PoolFacts(
                nodes=pool.nodes,
                ready_nodes=pool.ready_nodes,
                available_gpus=pool.available_gpus,
                price_per_gpu_hour=pool.definition.price_per_gpu_hour,
            )
            for pool in self.pools
        }


def service_key(record: indexes.ServiceRecord) -> ServiceKey:
    return ServiceKey(record.namespace or "default", record.name)


def hardware_for(
    pool: inventory.PoolInventory, gpupools: Mapping[str, GPUPool]
) -> PoolHardware | None:
    """The pool with its GPU figures (catalogue, or the GPUPool's custom spec.gpu)."""
    if not pool.plannable:
        return None
    solver_pool = pool.solver_pool()
    resource = gpupools.get(pool.name) if not pool.definition.discovered else None
    try:
        if resource is not None and resource.spec.gpu is not None:
            gpu = catalog.custom_gpu_type(
                resource.spec.gpu_type,
                resource.spec.gpu.model_dump(by_alias=True, exclude_none=True),
                gpus_per_node=solver_pool.gpus_per_node,
                price_per_gpu_hour=solver_pool.price_per_gpu_hour,
            )
        else:
            gpu = catalog.get_gpu(pool.definition.gpu_type)
    except InputError as error:
        logger.warning("pool %s left out of planning: %s", pool.name, error)
        return None
    return PoolHardware(solver_pool, gpu)


# Event reason: a child's fields that gpumix owns were edited by hand and have been put back.
DRIFT_REVERTED = "DriftReverted"
# Event reason: a plan's new Deployments were not Ready at the migration deadline.
MIGRATION_STALLED = "MigrationStalled"


def services_to_plan(records: Sequence[indexes.ServiceRecord]) -> list[ServiceToPlan]:
    return [ServiceToPlan(service_key(r), r.resource, r.problem) for r in records]


def recorded_statuses(
    records: Sequence[indexes.ServiceRecord],
) -> dict[ServiceKey, LLMServiceStatus | None]:
    return {service_key(record): record.status for record in records}


def current_plan_from_status(
    statuses: Mapping[ServiceKey, LLMServiceStatus | None],
) -> dict[Any, int]:
    """What runs now, as the solver's churn reference: the plans recorded in status."""
    plan: dict[Any, int] = {}
    for key, recorded in statuses.items():
        for entry in recorded.plan if recorded is not None else ():
            config = ConfigKey(entry.pool, entry.tensor_parallel, entry.weight_format)
            plan[key, config] = entry.replicas
    return plan


def current_assignment_from_status(
    statuses: Mapping[ServiceKey, LLMServiceStatus | None],
) -> dict[Any, dict[str, float]]:
    """The class shares each running configuration serves, as recorded in status: the plan
    keeps them while its replicas still carry them (``gpumix.solver.stability``)."""
    shares: dict[Any, dict[str, float]] = {}
    for key, recorded in statuses.items():
        for entry in recorded.plan if recorded is not None else ():
            config = ConfigKey(entry.pool, entry.tensor_parallel, entry.weight_format)
            shares[key, config] = {name: float(share) for name, share in entry.assignment.items()}
    return shares


def inputs_fingerprint(inputs: PlanningInputs) -> str:
    """Hash of what the solver sees, without the current plan (which our own writes change)."""
    text = repr((inputs.pools, sorted(inputs.services, key=lambda s: s.key)))
    return hashlib.sha256(text.encode()).hexdigest()


def failure_reason(result: PlanResult, plan: ServicePlan) -> str:
    if plan.reasons:
        return str(plan.reasons[0].code.value)
    if result.status is SolveStatus.NO_SOLUTION or plan.status is SolveStatus.NO_SOLUTION:
        return status.NO_SOLUTION_FOUND
    return "Infeasible"


def entry_summary(entry: Any) -> events.EntrySummary:
    return events.EntrySummary(
        gpu_type=entry.gpu_type,
        capacity_type=entry.capacity_type,
        pool=entry.pool,
        tensor_parallel=entry.tensor_parallel,
        weight_format=entry.weight_format,
        replicas=entry.replicas,
    )


@dataclass(frozen=True)
class ApplyFailure:
    """The API refused the writes toward ``target``; they are retried from ``retry_at``."""

    target: str
    message: str
    failures: int
    retry_at: float


def target_fingerprint(desired: Sequence[Mapping[str, Any]]) -> str:
    """The children a plan wants, by name and spec hash."""
    return ",".join(
        sorted(f"{o['kind']}/{o['metadata']['name']}@{reconcile.desired_hash(o)}" for o in desired)
    )


@dataclass
class PlannerState:
    """Memory of the planner; losing it on restart costs at most one extra solve."""

    fingerprint: str | None = None
    next_periodic: float = 0.0
    outcomes: dict[ServiceKey, Outcome] = field(default_factory=dict)
    clocks: dict[ServiceKey, reconcile.MigrationClock] = field(default_factory=dict)
    # The inventory each service was last planned on: explains the next plan change.
    facts_at_last_plan: dict[ServiceKey, Mapping[str, events.PoolFacts]] = field(
        default_factory=dict
    )
    # ... and the services planned with it (namespace/name): a newcomer can move it.
    peers_at_last_plan: dict[ServiceKey, frozenset[str]] = field(default_factory=dict)
    # The last status written per service: the watch may not have delivered it yet when the
    # next pass runs, and a stale status must not cause a second write or a second event.
    written: dict[ServiceKey, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[ServiceKey, LLMServiceStatus] = field(default_factory=dict)
    solves: int = 0
    # When the last pass started: a migration deadline at or before it has been acted on.
    last_pass_started: float | None = None
    apply_failures: dict[ServiceKey, ApplyFailure] = field(default_factory=dict)
    # Namespaced mode: the GPU pods of the last successful all-namespaces LIST.
    cluster_pods: tuple[inventory.PodRecord, ...] | None = None
    # Pools a service's new Deployments did not come up on: left out of its plans for a while.
    blocked: dict[ServiceKey, dict[str, stalls.PoolBlock]] = field(default_factory=dict)
    replan: bool = False
    # The pools as the solver saw them in the last pass (with their GPU figures).
    hardware: tuple[PoolHardware, ...] = ()
    # Why an autoscaling service's demand moved, taken when it was planned on: the next plan
    # change (or a DemandChanged event) reports it.
    demand_causes: dict[ServiceKey, str] = field(default_factory=dict)
    # ... and why the capacity factors of its model moved (reported only with a plan change).
    calibration_causes: dict[ServiceKey, str] = field(default_factory=dict)
    planned_demands: dict[ServiceKey, Demand | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """What the last pass saw and decided, swapped in whole after it: the plan API reads it
    from another thread, and must never see half a pass."""

    snapshot: Snapshot
    hardware: tuple[PoolHardware, ...]
    # Each service's status as just reconciled (or as the API has it, if the pass did not
    # reach it): the plan in effect.
    statuses: Mapping[ServiceKey, LLMServiceStatus | None]
    blocked: Mapping[ServiceKey, Mapping[str, stalls.PoolBlock]]
    planned_at: str


class FleetPlanner:
    def __init__(
        self,
        config: OperatorConfig,
        kube: Kube,
        indices: Mapping[str, Any],
        *,
        demand_builder: DemandBuilder = default_demand_builder,
        solver: Solver = solve,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: OperatorMetrics | None = None,
        demand: DemandTracker | None = None,
        calibration: CapacityCalibration | None = None,
    ):
        self.config = config
        self.demand = demand if demand is not None else default_demand_tracker(config)
        self.calibration = (
            calibration if calibration is not None else default_calibration(config, self.demand)
        )
        if demand_builder is default_demand_builder:
            demand_builder = self.calibrated_demand
        self.metrics = metrics
        self.kube = kube
        self.indices = indices
        self.demand_builder = demand_builder
        self.solver = solver
        self.monotonic = monotonic
        self.state = PlannerState()
        self.started = asyncio.Event()  # set once kopf has loaded the indices
        self._wakeup = asyncio.Event()
        self._solve_lock = asyncio.Lock()
        self.last_pass_ok: float | None = None
        self.history = PlanHistory()
        self.published: Published | None = None

    # -- triggers -----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wakeup.set()

    def indices_loaded(self) -> None:
        """kopf runs handlers only once every index is populated; the first call says so."""
        if not self.started.is_set():
            self.started.set()
            self._wakeup.set()

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.started.wait()
        sampler = asyncio.create_task(self.sample_load(), name="gpumix-load-sampler")
        try:
            await self._plan_forever()
        finally:
            sampler.cancel()

    def calibrated_demand(
        self,
        service: LLMService,
        pools: Sequence[PoolHardware],
        current_plan: CurrentPlan,
        admission: NamespaceAdmission,
    ) -> ServiceDemand:
        """The default demand builder, with the live capacity factors of the service's model."""
        return service_demand(
            service,
            pools,
            current_plan=current_plan,
            admission=admission,
            capacity_factors=self.calibration.factors_for(service.spec.model.name),
        )

    async def sample_load(self) -> None:
        """Read the autoscaling services' load (and every configuration's latencies) every
        interval; a demand or capacity factor that moved wakes the planner. A failure here
        never stops planning: the services keep their last demand and factors."""
        while True:
            try:
                records = indexes.values(self.indices.get(indexes.SERVICES_INDEX))
                self.demand.sync(records)
                moved = await self.demand.sample()
                recalibrated = await self.calibration.sample(records, self.state.hardware)
                if moved or recalibrated:
                    self.wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading the observed load failed; keeping the last demand")
            await asyncio.sleep(self.config.prometheus_interval_seconds)

    async def _plan_forever(self) -> None:
        while True:
            await self._wait_for_work()
            force = self.monotonic() >= self.state.next_periodic
            try:
                await self.run_pass(force_solve=force)
                self.last_pass_ok = self.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("planning pass failed; retrying in %.0f s", ERROR_BACKOFF_SECONDS)
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                self._wakeup.set()

    def wait_timeout(self) -> float:
        """Seconds until the next pass is due without a wake-up: the periodic re-plan, or a
        migration deadline or write retry the last pass has not yet seen pass."""
        deadlines = [self.state.next_periodic]
        seen = self.state.last_pass_started
        due = [clock.deadline for clock in self.state.clocks.values()]
        due += [failure.retry_at for failure in self.state.apply_failures.values()]
        for deadline in due:
            # A deadline that had passed when the last pass started was acted on then (or the
            # service is not being migrated any more); waking for it again would spin.
            if seen is None or deadline > seen:
                deadlines.append(deadline)
        return max(0.0, min(deadlines) - self.monotonic())

    async def _wait_for_work(self) -> None:
        timeout = self.wait_timeout()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
            # Batch the burst of events one change causes (a node going away moves pods,
            # Deployments and services at once).
            await asyncio.sleep(self.config.debounce_seconds)
        except TimeoutError:
            pass
        self._wakeup.clear()

    # -- one pass -----------------------------------------------------------------------------

    def snapshot(self, cluster_pods: Sequence[inventory.PodRecord] = ()) -> Snapshot:
        """The indices now; ``cluster_pods`` adds GPU pods the pods index does not see."""
        services = indexes.values(self.indices.get(indexes.SERVICES_INDEX))
        pool_records = indexes.values(self.indices.get(indexes.POOLS_INDEX))
        nodes = indexes.values(self.indices.get(indexes.NODES_INDEX))
        indexed: list[inventory.PodRecord] = indexes.values(self.indices.get(indexes.PODS_INDEX))
        # The index follows the watch, so its copy of a pod listed both ways is the fresher.
        by_name = {(pod.namespace, pod.name): pod for pod in cluster_pods}
        by_name.update({(pod.namespace, pod.name): pod for pod in indexed})
        pods = list(by_name.values())
        gpupools = [record.resource for record in pool_records if record.resource is not None]
        return Snapshot(
            services=tuple(sorted(services, key=lambda r: (r.namespace, r.name))),
            pool_records=tuple(sorted(pool_records, key=lambda r: r.name)),
            pools=inventory.build_inventory(gpupools, nodes, pods, self.config.inventory),
            pods=tuple(pods),
            namespace_labels=dict(indexes.values(self.indices.get(indexes.NAMESPACES_INDEX))),
        )

    async def cluster_gpu_pods(self) -> list[inventory.PodRecord]:
        """GPU pods in every namespace, when kopf watches only some (``--namespace``).

        kopf narrows namespaced watches, the pods index included, to the operator's
        namespaces; but nodes are shared, and GPUs that other teams' pods hold are not free.
        A failed LIST falls back to the last good one, else to the index alone.
        """
        if self.config.clusterwide:
            return []
        try:
            bodies = await asyncio.to_thread(self.kube.list_active_pods)
        except KubeError as error:
            logger.warning(
                "cannot list pods in all namespaces (%s): GPUs held by pods outside %s %s",
                error,
                ", ".join(self.config.namespaces),
                "are counted as of the last good list"
                if self.state.cluster_pods is not None
                else "are counted as free",
            )
            return list(self.state.cluster_pods or ())
        records = [record for body in bodies if (record := inventory.pod_record(body))]
        self.state.cluster_pods = tuple(records)
        return records

    async def run_pass(self, *, force_solve: bool = False) -> None:
        self.state.last_pass_started = self.monotonic()
        snapshot = self.snapshot(await self.cluster_gpu_pods())
        logger.debug("planning pass over %d services", len(snapshot.services))
        await self.plan(snapshot, force=force_solve)
        # Services are reconciled side by side: one at a time, a pass spent most of its time
        # waiting on the API server (about 1 s per new service at 200 services). Each service's
        # state is its own; the bound keeps the API server and the client's pool unflooded.
        gate = asyncio.Semaphore(RECONCILE_CONCURRENCY)

        async def reconcile(record: indexes.ServiceRecord) -> None:
            async with gate:
                try:
                    await asyncio.to_thread(self.reconcile_service, record, snapshot)
                except KubeError as error:
                    logger.warning("reconciling %s/%s: %s", record.namespace, record.name, error)

        await asyncio.gather(*(reconcile(record) for record in snapshot.services))
        if self.state.replan:  # a migration stalled: plan around it now, not at the next event
            self.state.replan = False
            self.state.fingerprint = None
            self._wakeup.set()
        await asyncio.to_thread(self.update_pool_statuses, snapshot)
        live = {service_key(record) for record in snapshot.services}
        memories: tuple[dict[ServiceKey, Any], ...] = (
            self.state.clocks,
            self.state.written,
            self.state.statuses,
            self.state.apply_failures,
            self.state.blocked,
            self.state.facts_at_last_plan,
            self.state.peers_at_last_plan,
            self.state.demand_causes,
            self.state.calibration_causes,
            self.state.planned_demands,
        )
        for memory in memories:
            for key in set(memory) - live:
                del memory[key]
        self.history.keep_only(live)
        self.published = Published(
            snapshot=snapshot,
            hardware=self.state.hardware,
            statuses={
                service_key(r): self.state.statuses.get(service_key(r)) or r.status
                for r in snapshot.services
            },
            blocked={key: dict(blocks) for key, blocks in self.state.blocked.items()},
            planned_at=utc_now(),
        )
        if self.metrics is not None:
            self.metrics.update_fleet(self.service_samples(snapshot), snapshot.pools)

    def service_samples(self, snapshot: Snapshot) -> list[ServiceSample]:
        """Each service's status as just reconciled (or as the API has it, if this pass did
        not reach it): what the metrics report."""
        samples = []
        for record in snapshot.services:
            key = service_key(record)
            reported = self.state.statuses.get(key) or record.status
            samples.append(ServiceSample(key.namespace, key.name, reported))
        return samples

    async def plan(self, snapshot: Snapshot, *, force: bool) -> None:
        gpupools = {r.name: r.resource for r in snapshot.pool_records if r.resource is not None}
        hardware = [
            found for pool in snapshot.pools if (found := hardware_for(pool, gpupools)) is not None
        ]
        self.state.hardware = tuple(hardware)
        recorded = recorded_statuses(snapshot.services)
        current_plan = current_plan_from_status(recorded)
        admission = snapshot.admission
        facts = snapshot.pool_facts
        generations = {service_key(r): r.generation for r in snapshot.services}

        self.demand.sync(snapshot.services)
        recalibrated = self.calibration.take_causes()

        def build(key: ServiceKey, resource: LLMService) -> ServiceDemand:
            remember(self.state.demand_causes, key, self.demand.take_cause(key))
            remember(self.state.calibration_causes, key, recalibrated.get(resource.spec.model.name))
            # The demand this plan is built with, for the status (the sampler may move the
            # tracked one while the solver runs).
            self.state.planned_demands[key] = self.demand.demand(key)
            planned = self.demand.planned(key, resource)
            demand = self.demand_builder(planned, hardware, current_plan, admission)
            return stalls.without_blocked(demand, self.active_blocks(key, snapshot))

        demands, problems = build_demands(services_to_plan(snapshot.services), build)
        invalid = {
            key: Outcome(generations.get(key), None, status.INVALID_SPEC, (problem,), facts)
            for key, problem in problems.items()
        }
        inputs = PlanningInputs(
            pools=tuple(h.pool for h in hardware),
            services=tuple(demands),
            current_plan=current_plan,
            current_assignment=current_assignment_from_status(recorded),
        )
        fingerprint = inputs_fingerprint(inputs) + repr(sorted(invalid))
        if not force and fingerprint == self.state.fingerprint:
            return
        self.state.fingerprint = fingerprint
        if force:
            # Periodic passes trust the API over memory, repairing status edited by others.
            self.state.written.clear()
            self.state.statuses.clear()
        self.state.next_periodic = self.monotonic() + self.config.planner_interval_seconds
        outcomes: dict[ServiceKey, Outcome] = dict(invalid)
        if demands:
            outcomes.update(await self._solve(inputs, generations, facts))
        self.state.outcomes = outcomes

    async def _solve(
        self,
        inputs: PlanningInputs,
        generations: Mapping[ServiceKey, int | None],
        facts: Mapping[str, events.PoolFacts],
    ) -> dict[ServiceKey, Outcome]:
        options = SolveOptions(
            backend=self.config.solver_backend,
            time_limit_seconds=self.config.solver_time_limit_seconds,
        )
        async with self._solve_lock:
            try:
                result = await asyncio.to_thread(self.solver, inputs, options)
            except Exception as error:  # a solver bug must not stop the operator
                logger.exception("solver failed")
                if self.metrics is not None:
                    self.metrics.record_solver_error()
                message = f"the planner failed: {error}"
                return {
                    demand.key: Outcome(
                        generations.get(demand.key),
                        None,
                        status.NO_SOLUTION_FOUND,
                        (message,),
                        facts,
                    )
                    for demand in inputs.services
                }
        self.state.solves += 1
        if self.metrics is not None:
            self.metrics.record_solve(result)
        logger.info(
            "planned %d services: %s, $%.2f/h in %.2f s",
            len(result.services),
            result.status.value,
            result.total_cost_per_hour,
            result.solve_seconds,
        )
        outcomes: dict[ServiceKey, Outcome] = {}
        for plan in result.services:
            messages = tuple(reason.message for reason in plan.reasons)
            feasible = plan.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
            outcomes[plan.key] = Outcome(
                generations.get(plan.key),
                plan if feasible else None,
                "" if feasible else failure_reason(result, plan),
                messages,
                facts,
            )
        return outcomes

    # -- reconcile one service (runs in a thread) ---------------------------------------------

    def reconcile_service(self, record: indexes.ServiceRecord, snapshot: Snapshot) -> None:
        key = service_key(record)
        outcome = self.state.outcomes.get(key)
        if outcome is None:
            return  # not planned yet: the next pass plans it
        children = self.children(key.namespace, record.name)
        actual = [reconcile.child_from_body(child, record.uid) for child in children]
        ready_by_name = {
            c.name: c.ready_replicas
            for c in actual
            if c.kind == reconcile.DEPLOYMENT and c.controlled
        }
        # Our own last write, when the watch has not delivered it yet; else what the API says.
        previous = self.state.statuses.get(key) or record.status
        previous_entries = list(previous.plan) if previous else []
        now = utc_now()

        migrating = False
        apply_error: str | None = None
        waiting_on = ""
        if outcome.plan is not None and record.resource is not None:
            router_ready = ready_by_name.get(router_name(record.name), 0) > 0
            desired = self.desired_objects(
                record.resource, outcome.plan, snapshot, router_ready=router_ready
            )
            target = target_fingerprint(desired)
            actions = self._decide(key, target, desired, actual)
            edited = reconcile.edited_children(actions, actual)
            apply_error = self._write_children(key, target, actions)
            bodies = {c.name: c.body for c in actual if c.kind == reconcile.DEPLOYMENT}
            problems = stalls.deployment_problems(
                key.namespace, {name: bodies.get(name) for name in actions.not_ready}, snapshot.pods
            )
            waiting_on = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
            if actions.stalled and apply_error is None:
                self._plan_around(record, outcome.plan, actions, actual, problems, snapshot)
            if apply_error is None:
                for (kind, name), fields in edited.items():
                    shown = ", ".join(fields[:5]) + (", …" if len(fields) > 5 else "")
                    self._post(
                        record,
                        DRIFT_REVERTED,
                        f"{kind} {name} was changed outside gpumix; restored {shown}",
                        "Warning",
                    )
            migrating = actions.migrating or bool(actions.not_ready and actions.kept)
            entries = tuple(
                self.entry_status(record.name, entry, ready_by_name)
                for entry in outcome.plan.entries
            )
            cost: Decimal | None = money(outcome.plan.cost_per_hour)
            baseline, savings = self.baseline_status(outcome.plan)
        else:
            # No plan for the current spec: keep the last good one running, untouched. Any
            # migration in flight is frozen with it, so its deadline no longer means anything.
            self.state.clocks.pop(key, None)
            self.state.apply_failures.pop(key, None)
            entries = tuple(
                entry.model_copy(update={"ready_replicas": ready_by_name.get(entry.deployment, 0)})
                for entry in previous_entries
            )
            cost = previous.cost_per_hour if previous else None
            baseline = previous.baseline if previous else None
            savings = previous.savings_percent if previous else None

        old_summary = [entry_summary(entry) for entry in previous_entries]
        new_summary = [entry_summary(entry) for entry in entries]
        plan_changed = outcome.plan is not None and not events.same_plan(old_summary, new_summary)
        last_plan_time = now if plan_changed else (previous.last_plan_time if previous else None)

        view = status.ServiceView(
            generation=record.generation,
            feasible=outcome.plan is not None,
            infeasible_reason=outcome.reason,
            messages=outcome.messages,
            entries=entries,
            cost_per_hour=cost,
            baseline=baseline,
            savings_percent=savings,
            migrating=migrating,
            last_plan_time=last_plan_time,
            apply_error=apply_error,
            waiting_on=waiting_on or None,
            observed_demand=self.demand.observed_status(
                key,
                previous.observed_demand if previous else None,
                self.state.planned_demands.get(key),
            ),
            metrics=self.demand.condition(key, record.generation),
            calibration=tuple(self.calibration.status_for(record.resource.spec.model.name))
            if record.resource is not None
            else (),
        )
        new_status = status.build_status(view, previous, now)
        document = status.status_document(new_status)

        peers = frozenset(str(other) for other in self.state.outcomes if other != key)
        # Events first: whoever sees the new status can also find the event that explains it.
        if plan_changed:
            old_cost = (
                float(previous.cost_per_hour) if previous and previous.cost_per_hour else None
            )
            cause = events.change_cause(
                old_generation=previous.observed_generation
                if previous and previous_entries
                else None,
                new_generation=record.generation,
                old_pools=self.state.facts_at_last_plan.get(key),
                new_pools=outcome.pool_facts,
                old_peers=self.state.peers_at_last_plan.get(key),
                new_peers=peers,
                demand="; ".join(
                    found
                    for found in (
                        self.state.demand_causes.pop(key, None),
                        self.state.calibration_causes.pop(key, None),
                    )
                    if found
                ),
            )
            message = events.plan_change_message(
                old_summary, new_summary, old_cost, float(cost or 0), cause
            )
            self._post(record, events.PLAN_CHANGED, message, "Normal")
            self.history.record(
                key, PlanChange(now, message, cause, old_cost, float(cost or 0), record.generation)
            )
        elif outcome.plan is not None and key in self.state.demand_causes:
            # The demand moved and the plan absorbs it as it is: say so once all the same.
            self._post(
                record,
                events.DEMAND_CHANGED,
                f"{self.state.demand_causes.pop(key)}; the plan is unchanged",
                "Normal",
            )
        if outcome.plan is not None:
            # A factor that moved without moving this plan needs no event: status shows it.
            self.state.calibration_causes.pop(key, None)
            self.state.facts_at_last_plan[key] = outcome.pool_facts
            self.state.peers_at_last_plan[key] = peers
        was_feasible = _condition_status(previous, status.FEASIBLE)
        if outcome.plan is None and was_feasible != "False":
            message = "; ".join(outcome.messages) or "no feasible plan"
            self._post(record, outcome.reason or "NoFeasiblePlan", message, "Warning")
        if apply_error is not None and _condition_reason(previous, status.READY) != (
            status.APPLY_FAILED,
            apply_error,
        ):
            self._post(record, status.APPLY_FAILED, apply_error, "Warning")

        stored = {k: v for k, v in record.raw_status.items() if v is not None}
        if document != stored and document != self.state.written.get(key):
            patch: dict[str, Any] = {k: None for k in stored if k not in document}
            patch.update(document)
            self.kube.patch_llmservice_status(key.namespace, record.name, patch)
        self.state.written[key] = document
        self.state.statuses[key] = new_status

    def active_blocks(self, key: ServiceKey, snapshot: Snapshot) -> dict[str, stalls.PoolBlock]:
        nodes = {pool.name: pool.nodes for pool in snapshot.pools}
        blocks = stalls.active(self.state.blocked.get(key, {}), self.monotonic(), nodes)
        if blocks:
            self.state.blocked[key] = blocks
        else:
            self.state.blocked.pop(key, None)
        return blocks

    def _plan_around(
        self,
        record: indexes.ServiceRecord,
        plan: ServicePlan,
        actions: reconcile.Actions,
        actual: Sequence[reconcile.Child],
        problems: Mapping[str, str],
        snapshot: Snapshot,
    ) -> None:
        """The deadline passed with new Deployments not Ready: leave their pools out of this
        service's plans for a while and re-plan, while what serves keeps serving."""
        key = service_key(record)
        timeout = self.config.migration_timeout_seconds
        pools = {manifests.deployment_name(record.name, e): e.pool for e in plan.entries}
        running = frozenset(
            ConfigKey(
                labels.get(manifests.LABEL_POOL, ""),
                int(labels.get(manifests.LABEL_TENSOR_PARALLEL) or 0),
                labels.get(manifests.LABEL_WEIGHT_FORMAT, ""),
            )
            for child in actual
            if child.kind == reconcile.DEPLOYMENT and child.ready_replicas > 0
            for labels in [((child.body or {}).get("metadata") or {}).get("labels") or {}]
        )
        nodes = {pool.name: pool.nodes for pool in snapshot.pools}
        blocks = self.state.blocked.setdefault(key, {})
        by_pool: dict[str, list[str]] = {}
        for name in actions.not_ready:
            if name in pools:
                by_pool.setdefault(pools[name], []).append(name)
        block_seconds = stalls.BLOCK_TIMEOUTS * timeout
        serving = "The running Deployments keep serving; " if actions.kept else ""
        for pool, names in sorted(by_pool.items()):
            reason = problems.get(names[0], stalls.NOT_READY).rstrip(". ")
            until = self.monotonic() + block_seconds
            blocks[pool] = stalls.PoolBlock(pool, reason, until, nodes.get(pool, 0), running)
            self._post(
                record,
                MIGRATION_STALLED,
                f"{', '.join(names)} not Ready within {timeout:.0f} s: {reason}. {serving}"
                f"gpumix re-plans without pool {pool} for {block_seconds:.0f} s",
                "Warning",
            )
        self.state.replan = True  # the next pass solves again, with the pools left out

    def children(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The service's children from kopf's indices (they follow the watches). A write of
        the last pass they have not seen yet is harmless: ``Kube.apply`` reads the live object
        before it writes, and deleting a child already gone is fine."""
        indexed = indexes.children_of(self.indices, namespace, manifests.label_value(name))
        if indexed is not None:
            return indexed
        return self.kube.list_children(namespace, name)

    def _post(self, record: indexes.ServiceRecord, reason: str, message: str, kind: str) -> None:
        try:
            self.kube.post_event(
                namespace=record.namespace,
                name=record.name,
                uid=record.uid,
                reason=reason,
                message=message,
                event_type=kind,
            )
        except KubeError as error:  # an event is informational: never fail the pass for it
            logger.warning(
                "could not post event on %s/%s: %s", record.namespace, record.name, error
            )

    def _write_children(
        self, key: ServiceKey, target: str, actions: reconcile.Actions
    ) -> str | None:
        """Make the writes ``actions`` asks for; the API's refusal, if any, for the status.

        Writes the API refused are not repeated on every wake-up: the same target is retried
        with exponential backoff, a new target (the spec or the plan changed) at once.
        """
        failure = self.state.apply_failures.get(key)
        if not actions.apply and not actions.delete:
            self.state.apply_failures.pop(key, None)
            return None
        now = self.monotonic()
        if failure is not None and failure.target == target and now < failure.retry_at:
            return failure.message
        try:
            for obj in actions.apply:
                result = self.kube.apply(obj)
                logger.info(
                    "%s %s %s/%s", result, obj["kind"], key.namespace, obj["metadata"]["name"]
                )
            for child in actions.delete:
                self.kube.delete(child.kind, child.namespace, child.name)
                logger.info("deleted obsolete %s %s/%s", child.kind, key.namespace, child.name)
        except KubeError as error:
            failures = failure.failures + 1 if failure and failure.target == target else 1
            delay = min(APPLY_BACKOFF_SECONDS * 2 ** (failures - 1), APPLY_BACKOFF_MAX_SECONDS)
            self.state.apply_failures[key] = ApplyFailure(target, str(error), failures, now + delay)
            logger.warning(
                "writing the children of %s/%s failed (retry in %.0f s): %s",
                key.namespace,
                key.name,
                delay,
                error,
            )
            return str(error)
        self.state.apply_failures.pop(key, None)
        return None

    def _decide(
        self,
        key: ServiceKey,
        fingerprint: str,
        desired: list[dict[str, Any]],
        actual: list[reconcile.Child],
    ) -> reconcile.Actions:
        clock = self.state.clocks.get(key)
        now = self.monotonic()
        deadline_passed = (
            clock is not None and clock.fingerprint == fingerprint and (now >= clock.deadline)
        )
        actions = reconcile.decide(desired, actual, deadline_passed=deadline_passed)
        timeout = self.config.migration_timeout_seconds
        if not actions.not_ready:
            self.state.clocks.pop(key, None)
        elif actions.stalled:
            # Acted on now (the planner re-plans around it): the same target stalls again,
            # if it still does, one timeout later, not on every pass.
            self.state.clocks[key] = reconcile.MigrationClock(fingerprint, now + timeout)
        else:
            self.state.clocks[key] = reconcile.advance_clock(clock, fingerprint, now, timeout)
        return actions

    def desired_objects(
        self,
        service: LLMService,
        plan: ServicePlan,
        snapshot: Snapshot,
        *,
        router_ready: bool = False,
    ) -> list[dict[str, Any]]:
        """The LLMService's children for `plan`. Its entry Service moves from the vLLM pods to
        the router's only once a router pod is ready, so installing or upgrading gpumix never
        leaves the endpoint without pods behind it."""
        placements = {
            pool.name: manifests.PoolPlacement(
                name=pool.name,
                gpu_type=pool.definition.gpu_type,
                capacity_type=pool.definition.capacity_type,
                node_selector=pool.definition.node_selector,
                tolerations=pool.definition.tolerations,
                excluded_label_keys=pool.definition.excluded_label_keys,
            )
            for pool in snapshot.pools
        }
        objects = build_router_objects(service, self.config.router)
        entry_selector = router_selector(service.metadata.name) if router_ready else None
        objects.append(manifests.build_service(service, entry_selector))
        for entry in plan.entries:
            placement = placements.get(entry.pool)
            if placement is None:
                continue  # the pool vanished since the solve; the next solve moves the entry
            objects.append(manifests.build_deployment(service, entry, placement))
            objects.append(manifests.build_entry_service(service, entry, placement))
        return objects

    @staticmethod
    def entry_status(
        service_name: str, entry: Any, ready_by_name: Mapping[str, int]
    ) -> PlanEntryStatus:
        name = manifests.deployment_name(service_name, entry)
        return PlanEntryStatus(
            deployment=name,
            pool=entry.pool,
            gpu_type=entry.gpu_type,
            capacity_type=entry.capacity_type,
            tensor_parallel=entry.tensor_parallel,
            weight_format=entry.weight_format,
            replicas=entry.replicas,
            ready_replicas=ready_by_name.get(name, 0),
            gpus=entry.gpus,
            cost_per_hour=money(entry.cost_per_hour),
            assignment={cls: f"{share:.3f}" for cls, share in sorted(entry.assignment.items())},
        )

    @staticmethod
    def baseline_status(plan: ServicePlan) -> tuple[BaselineStatus | None, Decimal | None]:
        priced = [b for b in plan.baselines if b.cost_per_hour is not None]
        if not priced:
            return None, None
        best = min(priced, key=lambda b: (b.cost_per_hour or 0.0, b.gpu_type))
        baseline = BaselineStatus(name=best.name, cost_per_hour=money(best.cost_per_hour or 0.0))
        savings = None
        if plan.savings_percent is not None:
            savings = Decimal(f"{max(plan.savings_percent, 0.0):.1f}")
        return baseline, savings

    # -- GPUPool status -----------------------------------------------------------------------

    def update_pool_statuses(self, snapshot: Snapshot) -> None:
        counted = {pool.name: pool for pool in snapshot.pools}
        now = utc_now()
        for record in snapshot.pool_records:
            pool = counted.get(record.name)
            if record.resource is None and not record.problem:
                continue
            fields: dict[str, Any] = {}
            if pool is not None:
                price = pool.definition.price_per_gpu_hour
                fields = {
                    "nodes": pool.nodes,
                    "readyNodes": pool.ready_nodes,
                    "gpus": pool.gpus,
                    "allocatedGPUs": pool.allocated_gpus,
                    "availableGPUs": pool.available_gpus,
                    "pricePerGPUHour": f"{price:.4f}" if price is not None else None,
                }
            elif record.resource is not None and pool_problem(record) is None:
                continue  # nothing counted yet, nothing wrong: leave the status as it is
            conditions = status.set_condition(
                _pool_conditions(record.raw_status),
                plannable_condition(record),
                now,
            )
            fields["conditions"] = [c.model_dump(mode="json", by_alias=True) for c in conditions]
            document = indexes.gpupool_status_document(GPUPoolStatus.model_validate(fields))
            if document != dict(record.raw_status):
                try:
                    self.kube.patch_gpupool_status(record.name, document)
                except KubeError as error:
                    logger.warning("GPUPool %s status: %s", record.name, error)


PLANNABLE = "Plannable"


def _pool_conditions(raw_status: Mapping[str, Any]) -> tuple[Condition, ...]:
    try:
        return tuple(GPUPoolStatus.model_validate(raw_status).conditions)
    except ValueError:
        return ()  # unreadable: rewritten from scratch


def pool_problem(record: indexes.PoolRecord) -> tuple[str, str] | None:
    """(reason, message) when the planner must leave a GPUPool out, else None."""
    if record.resource is None:
        return status.INVALID_SPEC, record.problem or "invalid spec"
    if record.resource.spec.gpu is None:
        try:
            catalog.get_gpu(record.resource.spec.gpu_type)
        except InputError as error:
            return (
                "UnknownGPUType",
                f"spec.gpuType: {error.detail}; describe the GPU with spec.gpu to use it",
            )
    return None


def plannable_condition(record: indexes.PoolRecord) -> Condition:
    problem = pool_problem(record)
    generation = record.resource.metadata.generation if record.resource is not None else None
    if problem is None:
        return Condition(
            type=PLANNABLE,
            status="True",
            reason="Plannable",
            message="the planner uses this pool",
            observed_generation=generation,
        )
    reason, message = problem
    return Condition(
        type=PLANNABLE,
        status="False",
        reason=reason,
        message=f"left out of planning: {message}",
        observed_generation=generation,
    )


def _condition(previous: Any, kind: str) -> Any | None:
    """The condition of type ``kind`` in a previous status, if any."""
    if previous is None:
        return None
    return next((c for c in previous.conditions if c.type == kind), None)


def _condition_reason(previous: Any, kind: str) -> tuple[str, str] | None:
    found = _condition(previous, kind)
    return None if found is None else (str(found.reason), str(found.message))


def _condition_status(previous: Any, kind: str) -> str | None:
    found = _condition(previous, kind)
    return None if found is None else str(found.status)
