"""Run a PuLP problem on HiGHS (default) or CBC and report the status honestly.

PuLP folds "stopped at the time limit with a plan" into ``status=Optimal`` and tells the truth
only in ``sol_status`` (``IntegerFeasible``). We map the pair, never the status alone, and report
the relative gap: HiGHS reports its own; for CBC we bound it with the LP relaxation, which can
only overstate the gap.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pulp

from gpumix.solver.model import Backend, SolveStatus


@dataclass(frozen=True)
class BackendOutcome:
    status: SolveStatus
    objective_value: float | None
    gap: float | None
    seconds: float
    backend: Backend


def _flush_c_stdout() -> None:
    # No C library to reach (neither Linux nor macOS): nothing was buffered there either.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


_banner_lock = threading.Lock()
_banner_silenced = False


def silence_highs_banner() -> None:
    """HiGHS prints its copyright banner on stdout (from C++) the first time a solver object is
    created in a process, before any option can switch output off. ``gpumix plan -o json`` must
    print only JSON, so create the first object once with file descriptor 1 pointed at /dev/null.
    """
    global _banner_silenced
    with _banner_lock:
        if _banner_silenced:
            return
        import highspy

        sys.stdout.flush()
        saved_stdout = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            highspy.Highs()  # type: ignore[no-untyped-call]
            # The banner sits in the C library's stdout buffer when stdout is not a terminal;
            # flush it into /dev/null before the real stdout comes back.
            _flush_c_stdout()
        finally:
            os.dup2(saved_stdout, 1)
            os.close(devnull)
            os.close(saved_stdout)
        _banner_silenced = True


def highs_available() -> bool:
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(requested: Backend) -> Backend:
    """HiGHS when asked for and importable; CBC (bundled with PuLP) otherwise."""
    if requested is Backend.HIGHS and not highs_available():
        return Backend.CBC
    return requested


def run(
    problem: pulp.LpProblem,
    backend: Backend,
    *,
    time_limit_seconds: float,
    mip_relative_gap: float,
    threads: int | None = None,
    objective_target: float | None = None,
) -> BackendOutcome:
    """HiGHS stops as soon as a plan reaches ``objective_target`` (minimisation; the caller
    has a bound that proves such a plan optimal); CBC ignores it. No MIP start is passed:
    HiGHS 1.16 maps a start into its presolved space with the wrong objective and can then
    prune the optimum (see ``subproblem.ServiceSubproblem.solve``)."""
    backend = choose_backend(backend)
    started = time.perf_counter()
    time_limit = max(time_limit_seconds, 0.01)
    if backend is Backend.HIGHS:
        silence_highs_banner()
        solver: pulp.LpSolver = pulp.HiGHS(
            msg=False,
            timeLimit=time_limit,
            gapRel=mip_relative_gap,
            threads=threads,
            random_seed=0,
            **({} if objective_target is None else {"objective_target": objective_target}),
        )
    else:
        solver = cbc_solver(timeLimit=time_limit, gapRel=mip_relative_gap, threads=threads)
    problem.solve(solver)
    seconds = time.perf_counter() - started
    status = _map_status(problem.status, problem.sol_status)
    objective_value = _objective_value(problem) if _has_plan(status) else None
    gap = _gap(problem, backend, status, objective_value)
    return BackendOutcome(status, objective_value, gap, seconds, backend)


def _has_plan(status: SolveStatus) -> bool:
    return status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


def _map_status(status: int, sol_status: int) -> SolveStatus:
    if status == pulp.LpStatusOptimal and sol_status == pulp.LpSolutionOptimal:
        return SolveStatus.OPTIMAL
    if status == pulp.LpStatusOptimal and sol_status == pulp.LpSolutionIntegerFeasible:
        # The time limit (or another limit) stopped the search with a plan in hand.
        return SolveStatus.FEASIBLE
    if status == pulp.LpStatusInfeasible or sol_status == pulp.LpSolutionInfeasible:
        return SolveStatus.INFEASIBLE
    # Not solved (time limit before any plan) or unbounded, which our models never are.
    return SolveStatus.NO_SOLUTION


def _objective_value(problem: pulp.LpProblem) -> float:
    value = pulp.value(problem.objective)
    return float(value) if value is not None else 0.0


def _gap(
    problem: pulp.LpProblem,
    backend: Backend,
    status: SolveStatus,
    objective_value: float | None,
) -> float | None:
    if objective_value is None:
        return None
    if backend is Backend.HIGHS:
        info = problem.solverModel.getInfo()
        gap = float(info.mip_gap)
        # HiGHS reports an infinite gap for pure LPs and a tiny negative one on exact ties.
        if not math.isfinite(gap):
            return 0.0 if status is SolveStatus.OPTIMAL else None
        return max(gap, 0.0)
    if status is SolveStatus.OPTIMAL:
        return 0.0
    return _lp_relaxation_gap(problem, objective_value)


def cbc_solver(**options: Any) -> pulp.LpSolver:
    """CBC as bundled with PuLP, through COIN_CMD (PULP_CBC_CMD is deprecated in PuLP 3.3)."""
    from pulp.apis.coin_api import pulp_cbc_path

    return pulp.COIN_CMD(path=pulp_cbc_path, msg=False, **options)


def _lp_relaxation_gap(problem: pulp.LpProblem, objective_value: float) -> float | None:
    """Upper bound on CBC's gap: distance to the LP relaxation's optimum."""
    values = {variable.name: variable.varValue for variable in problem.variables()}
    status, sol_status = problem.status, problem.sol_status
    problem.solve(cbc_solver(mip=False))
    relaxed_ok = problem.status == pulp.LpStatusOptimal
    bound = _objective_value(problem)
    # Restore the integer plan the caller will extract.
    for variable in problem.variables():
        variable.varValue = values[variable.name]
    problem.assignStatus(status, sol_status)
    if not relaxed_ok:
        return None
    return abs(objective_value - bound) / max(abs(objective_value), 1e-9)
