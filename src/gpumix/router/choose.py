"""Where one request goes: a configuration drawn by the plan's weights, then its least busy pod.

Pure: the table, the in-flight counts and the random source are passed in.

PlanWeighted, for class ``w``:

1. pick a configuration among those with a Ready pod, in proportion to ``assignment[w]``,
   by smooth weighted round-robin (nginx's): deterministic, so after n requests of a class
   each configuration's realised share is within 1/n of its weight (a random draw would need
   thousands of requests to get within a few points); a configuration without Ready pods
   drops out, so its share is spread over the others in proportion to theirs;
2. if no configuration that serves ``w`` has a Ready pod, draw among the plan's configurations
   that do, in proportion to their total assignment (uniformly if that is zero): a slower
   answer beats a 503;
3. if no plan configuration has a Ready pod (no plan yet, or a migration whose new pods are not
   ready), draw uniformly among Deployments that have Ready pods.

Within the configuration, the pod with the fewest requests in flight wins; ties are broken at
random so that idle pods share the load.

RoundRobin ignores classes and weights and cycles over every Ready pod of the service.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gpumix.router.table import RoutingMode, RoutingTable


@dataclass(frozen=True)
class Pick:
    deployment: str
    pod: str  # ip:port


Draw = Callable[[Sequence[str], Sequence[float]], str]


class SmoothWeighted:
    """Smooth weighted round-robin over a changing set of names: each pick adds every name's
    weight to its credit, takes the name with the most credit and charges it the total."""

    def __init__(self) -> None:
        self.credit: dict[str, float] = {}

    def __call__(self, names: Sequence[str], weights: Sequence[float]) -> str:
        # names that left (no Ready pod, or out of the plan) forget their credit
        self.credit = {name: self.credit.get(name, 0.0) for name in names}
        for name, weight in zip(names, weights, strict=True):
            self.credit[name] += weight
        chosen = max(names, key=lambda name: (self.credit[name], name))
        self.credit[chosen] -= sum(weights)
        return chosen


def choose_deployment(table: RoutingTable, class_name: str, draw: Draw) -> str | None:
    """The configuration (Deployment name) for one request of ``class_name``, PlanWeighted."""
    ready = [entry for entry in table.entries if table.pods_of(entry.deployment)]
    weights = [entry.weight(class_name) for entry in ready]
    if sum(weights) > 0:
        return draw([entry.deployment for entry in ready], weights)
    if ready:
        totals = [entry.total_weight for entry in ready]
        if sum(totals) <= 0:
            totals = [1.0] * len(ready)
        return draw([entry.deployment for entry in ready], totals)
    others = sorted(table.ready_pods)
    return draw(others, [1.0] * len(others)) if others else None


def least_in_flight(pods: Sequence[str], in_flight: Mapping[str, int], rng: random.Random) -> str:
    fewest = min(in_flight.get(pod, 0) for pod in pods)
    idle = [pod for pod in pods if in_flight.get(pod, 0) == fewest]
    return idle[0] if len(idle) == 1 else rng.choice(idle)


class Chooser:
    """Picks (deployment, pod) per request; holds the round-robin position between requests."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self._next_round_robin = 0
        self._weighted: dict[str, SmoothWeighted] = {}  # per class

    def pick(
        self,
        table: RoutingTable,
        class_name: str,
        in_flight: Mapping[str, int],
        excluded: frozenset[str] = frozenset(),
    ) -> Pick | None:
        """Where to send the request, avoiding ``excluded`` pods; None if no pod is Ready."""
        table = table.without_pods(excluded)
        if table.mode is RoutingMode.ROUND_ROBIN:
            return self._round_robin(table)
        draw = self._weighted.setdefault(class_name, SmoothWeighted())
        deployment = choose_deployment(table, class_name, draw)
        if deployment is None:
            return None
        return Pick(deployment, least_in_flight(table.pods_of(deployment), in_flight, self.rng))

    def retry(
        self,
        table: RoutingTable,
        class_name: str,
        in_flight: Mapping[str, int],
        failed: Sequence[Pick],
    ) -> Pick | None:
        """Another pod after those in ``failed`` refused or reset. The first retry stays in
        the configuration if it has another pod (the class keeps its share); later ones draw
        as for a new request, without the failed pods: a configuration whose pods have just
        started may have none listening yet."""
        excluded = frozenset(pick.pod for pick in failed)
        last = failed[-1]
        same = [pod for pod in table.pods_of(last.deployment) if pod not in excluded]
        if same and len(failed) == 1 and table.mode is RoutingMode.PLAN_WEIGHTED:
            return Pick(last.deployment, least_in_flight(same, in_flight, self.rng))
        return self.pick(table, class_name, in_flight, excluded)

    def _round_robin(self, table: RoutingTable) -> Pick | None:
        pods = sorted((pod, name) for name, addrs in table.ready_pods.items() for pod in addrs)
        if not pods:
            return None
        pod, deployment = pods[self._next_round_robin % len(pods)]
        self._next_round_robin += 1
        return Pick(deployment, pod)
