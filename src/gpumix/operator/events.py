"""One-line texts for PlanChanged events: what the plan became and why.

Pure. A plan is compared as a set of (pool, tensor-parallel size, weight format, replicas); the
cause comes from comparing the inputs of the previous plan with the current ones, e.g.
"L4/spot ×3 → A100-80GB/on-demand ×1 ($2.61/h → $3.67/h): pool l4-spot lost 2 nodes".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PLAN_CHANGED = "PlanChanged"
DEMAND_CHANGED = "DemandChanged"
DEFAULT_WEIGHT_FORMAT = "bf16"


@dataclass(frozen=True, order=True)
class EntrySummary:
    """The part of a plan entry that a plan change is about."""

    gpu_type: str
    capacity_type: str
    pool: str
    tensor_parallel: int
    weight_format: str
    replicas: int

    def text(self) -> str:
        parts = [f"{self.gpu_type}/{self.capacity_type}"]
        if self.tensor_parallel > 1:
            parts.append(f"tp{self.tensor_parallel}")
        if self.weight_format != DEFAULT_WEIGHT_FORMAT:
            parts.append(self.weight_format)
        return f"{' '.join(parts)} ×{self.replicas}"


def plan_text(entries: Iterable[EntrySummary]) -> str:
    ordered = sorted(entries)
    return " + ".join(entry.text() for entry in ordered) if ordered else "nothing"


def same_plan(old: Iterable[EntrySummary], new: Iterable[EntrySummary]) -> bool:
    return sorted(old) == sorted(new)


def money(cost_per_hour: float | None) -> str:
    return "$?/h" if cost_per_hour is None else f"${cost_per_hour:.2f}/h"


def plan_change_message(
    old: Sequence[EntrySummary],
    new: Sequence[EntrySummary],
    old_cost: float | None,
    new_cost: float | None,
    cause: str,
) -> str:
    if not old:
        return f"planned {plan_text(new)} ({money(new_cost)}): {cause}"
    return f"{plan_text(old)} → {plan_text(new)} ({money(old_cost)} → {money(new_cost)}): {cause}"


@dataclass(frozen=True)
class PoolFacts:
    """What about a pool may explain a re-plan."""

    nodes: int
    ready_nodes: int
    available_gpus: int
    price_per_gpu_hour: float | None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def pool_changes(old: Mapping[str, PoolFacts], new: Mapping[str, PoolFacts]) -> list[str]:
    """Human-readable differences between two inventories, most telling first."""
    changes: list[str] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is None:
            changes.append(f"pool {name} appeared")
            continue
        if after is None:
            changes.append(f"pool {name} disappeared")
            continue
        if after.nodes < before.nodes:
            changes.append(f"pool {name} lost {_plural(before.nodes - after.nodes, 'node')}")
        elif after.nodes > before.nodes:
            changes.append(f"pool {name} gained {_plural(after.nodes - before.nodes, 'node')}")
        elif after.ready_nodes != before.ready_nodes:
            changes.append(f"pool {name} ready nodes {before.ready_nodes} → {after.ready_nodes}")
        elif after.available_gpus != before.available_gpus:
            changes.append(
                f"pool {name} available GPUs {before.available_gpus} → {after.available_gpus}"
            )
        if after.price_per_gpu_hour != before.price_per_gpu_hour:
            changes.append(
                f"pool {name} price {money(before.price_per_gpu_hour)} → "
                f"{money(after.price_per_gpu_hour)} per GPU"
            )
    return changes


def change_cause(
    *,
    old_generation: int | None,
    new_generation: int | None,
    old_pools: Mapping[str, PoolFacts] | None,
    new_pools: Mapping[str, PoolFacts],
    old_peers: frozenset[str] | None = None,
    new_peers: frozenset[str] = frozenset(),
    demand: str | None = None,
) -> str:
    """Why the plan of one service changed, from what changed in its inputs. ``*_peers`` are
    the other services planned jointly with it (namespace/name), at its last plan and now."""
    causes: list[str] = []
    if old_generation is None:
        causes.append("first plan")
    elif new_generation != old_generation:
        causes.append(f"spec changed (generation {old_generation} → {new_generation})")
    if old_pools is not None:
        causes.extend(pool_changes(old_pools, new_pools))
    if old_peers is not None:
        causes.extend(_peer_changes(old_peers, new_peers))
    if demand:  # autoscaling: the observed load moved the demand
        causes.append(demand)
    if not causes:
        causes.append("periodic re-plan" if old_pools is not None else "operator restarted")
    return "; ".join(causes)


def _peer_changes(old: frozenset[str], new: frozenset[str], shown: int = 3) -> list[str]:
    """A newcomer (or a leaver) sharing the pools can move a service: say who."""
    changes = []
    for verb, names in (("planned", sorted(new - old)), ("removed", sorted(old - new))):
        if names:
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            changes.append(f"services sharing the pools {verb}: {', '.join(names[:shown])}{more}")
    return changes
