"""`gpumix plan`: plan LLMServices on a fleet of GPUPools offline, with the same solver the
operator runs. Exit codes: 0 plan found, 3 infeasible (the result is still printed, with
reasons), 2 invalid input (one line naming the file and the field)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gpumix.errors import InputError

EXIT_PLANNED = 0
EXIT_INFEASIBLE = 3


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="plan the cheapest mixed-GPU deployment for LLMServices on a fleet",
        description="Plan LLMServices on the GPUPools of a fleet file (offline).",
    )
    parser.add_argument(
        "-f",
        "--filename",
        dest="services",
        action="append",
        required=True,
        metavar="SERVICE",
        help="LLMService manifests (multi-document YAML allowed); repeatable",
    )
    parser.add_argument("--fleet", required=True, metavar="FLEET", help="GPUPool manifests")
    parser.add_argument(
        "--profiles", metavar="PROFILES", help="measured throughputs that override the model"
    )
    parser.add_argument(
        "--objective",
        choices=["MinCost", "MaxThroughput"],
        help="override every service's spec.objective",
    )
    parser.add_argument(
        "--time-limit", type=float, default=30.0, metavar="S", help="solver time limit (s)"
    )
    parser.add_argument(
        "--backend", choices=["highs", "cbc"], default="highs", help="MILP solver (default highs)"
    )
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `gpumix --help` does not pay for PuLP and the catalogues.
    from gpumix.planning import NamespaceAdmission, load_profiles, planning_inputs, pool_hardware
    from gpumix.resources import GPUPool, LLMService, load_manifests
    from gpumix.solver import Backend, Objective, SolveOptions, solve

    if args.time_limit <= 0:
        raise InputError("must be positive", field="--time-limit")
    services: list[tuple[LLMService, str]] = []
    for path in args.services:
        for resource in load_manifests(path):
            if isinstance(resource, LLMService):
                services.append((resource, path))
    if not services:
        raise InputError("no LLMService manifest found", source=", ".join(args.services))
    gpupools = [
        resource for resource in load_manifests(args.fleet) if isinstance(resource, GPUPool)
    ]
    pools = [pool_hardware(resource, source=args.fleet) for resource in gpupools]
    if not pools:
        raise InputError("no GPUPool manifest found", source=args.fleet)
    objective = Objective(args.objective) if args.objective else None
    if objective is Objective.MAX_THROUGHPUT:
        for service, path in services:
            if service.spec.max_cost_per_hour is None:
                raise InputError(
                    "--objective MaxThroughput needs a budget",
                    source=f"{path}: LLMService {service.metadata.name}",
                    field="spec.budget.maxCostPerHour",
                )
    profiles = load_profiles(args.profiles) if args.profiles else ()
    # Offline a namespace is known by its name alone (kubernetes.io/metadata.name).
    admission = NamespaceAdmission.of(gpupools)
    inputs = planning_inputs(services, pools, profiles=profiles, admission=admission)
    result = solve(
        inputs,
        SolveOptions(
            backend=Backend(args.backend),
            time_limit_seconds=args.time_limit,
            objective_override=objective,
        ),
    )
    document = result_document(result)
    if args.output == "json":
        print(json.dumps(document, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(document, sort_keys=False), end="")
    else:
        print(render_table(result))
    return EXIT_PLANNED if result.feasible and not result.violations else EXIT_INFEASIBLE


def _money(value: float) -> float:
    return round(value, 4)


def result_document(result: Any) -> dict[str, Any]:
    """The contract's JSON (ARCHITECTURE.md), plus savingsPercent, reasonCodes and more."""
    return {
        "status": result.status.value,
        "objective": result.objective,
        "gap": None if result.gap is None else round(result.gap, 6),
        "solveSeconds": round(result.solve_seconds, 3),
        "totalCostPerHour": _money(result.total_cost_per_hour),
        "backend": result.backend.value,
        "variables": result.variables,
        "constraints": result.constraints,
        "services": [_service_document(plan) for plan in result.services],
        "violations": [
            {"service": v.service, "constraint": v.constraint, "message": v.message}
            for v in result.violations
        ],
    }


def _service_document(plan: Any) -> dict[str, Any]:
    return {
        "namespace": plan.namespace,
        "name": plan.name,
        "status": plan.status.value,
        "objective": plan.objective.value,
        "costPerHour": _money(plan.cost_per_hour),
        "demandRequestsPerSecond": round(plan.demand_rps, 4),
        "scaleFactor": round(plan.scale_factor, 6),
        "servedRequestsPerSecond": round(plan.served_rps, 4),
        "replicas": [
            {
                "pool": entry.pool,
                "gpuType": entry.gpu_type,
                "capacityType": entry.capacity_type,
                "tensorParallel": entry.tensor_parallel,
                "weightFormat": entry.weight_format,
                "replicas": entry.replicas,
                "gpus": entry.gpus,
                "costPerHour": _money(entry.cost_per_hour),
                "assignment": {name: round(v, 4) for name, v in entry.assignment.items()},
                "capacityRequestsPerSecond": {
                    name: round(v, 4) for name, v in entry.capacity_rps.items()
                },
            }
            for entry in plan.entries
        ],
        "classes": [
            {
                "name": name,
                "demandRequestsPerSecond": round(plan.class_demand_rps[name], 4),
                "capacityRequestsPerSecond": round(plan.class_capacity_rps.get(name, 0.0), 4),
            }
            for name in plan.class_demand_rps
        ],
        "baselines": [
            {
                "name": baseline.name,
                "status": baseline.status.value,
                "costPerHour": None
                if baseline.cost_per_hour is None
                else _money(baseline.cost_per_hour),
                "servedRequestsPerSecond": None
                if baseline.served_rps is None
                else round(baseline.served_rps, 4),
            }
            for baseline in plan.baselines
        ],
        "savingsPercent": None if plan.savings_percent is None else round(plan.savings_percent, 2),
        "throughputGainPercent": None
        if plan.throughput_gain_percent is None
        else round(plan.throughput_gain_percent, 2),
        "reasons": [reason.message for reason in plan.reasons],
        "reasonCodes": [reason.code.value for reason in plan.reasons],
    }


def render_table(result: Any) -> str:
    lines = [
        f"status {result.status.value}  objective {result.objective}  "
        f"total ${result.total_cost_per_hour:.2f}/h  solved in {result.solve_seconds:.2f} s"
        + (f"  gap {100 * result.gap:.2f} %" if result.gap else "")
    ]
    for plan in result.services:
        lines.append("")
        lines.append(
            f"{plan.namespace}/{plan.name}  [{plan.status.value}]  ${plan.cost_per_hour:.2f}/h  "
            f"{plan.replicas} replicas  demand {plan.demand_rps:.2f} req/s"
            + (
                f"  scale {plan.scale_factor:.3f}"
                if plan.objective.value == "MaxThroughput"
                else ""
            )
        )
        if plan.entries:
            header = f"  {'POOL':<18}{'GPU':<12}{'TP':>3} {'FORMAT':<7}{'REPL':>5}{'$/H':>9}  SHARE"
            lines.append(header)
            for entry in plan.entries:
                shares = ", ".join(
                    f"{name} {100 * share:.0f}%"
                    for name, share in entry.assignment.items()
                    if share
                )
                lines.append(
                    f"  {entry.pool:<18}{entry.gpu_type:<12}{entry.tensor_parallel:>3} "
                    f"{entry.weight_format:<7}{entry.replicas:>5}{entry.cost_per_hour:>9.2f}  "
                    f"{shares}"
                )
            lines.append(
                "  class capacity vs demand (req/s): "
                + ", ".join(
                    f"{name} {plan.class_capacity_rps.get(name, 0.0):.2f}/{demand:.2f}"
                    for name, demand in plan.class_demand_rps.items()
                )
            )
        feasible = [b for b in plan.baselines if b.cost_per_hour is not None]
        if feasible:
            best = min(feasible, key=lambda b: b.cost_per_hour or 0.0)
            if plan.objective.value == "MaxThroughput":
                best = max(feasible, key=lambda b: b.served_rps or 0.0)
            lines.append(
                f"  vs best homogeneous ({best.name}: ${best.cost_per_hour or 0:.2f}/h, "
                f"{best.served_rps or 0:.2f} req/s): "
                + (
                    f"savings {plan.savings_percent:.1f} %"
                    if plan.savings_percent is not None
                    else ""
                )
                + (
                    f", throughput {plan.throughput_gain_percent:+.1f} %"
                    if plan.throughput_gain_percent is not None
                    else ""
                )
            )
        for reason in plan.reasons:
            lines.append(f"  ! {reason.code.value}: {reason.message}")
    for violation in result.violations:
        lines.append(f"! plan check failed: {violation.service}: {violation.message}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
