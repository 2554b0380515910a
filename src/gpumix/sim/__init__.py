"""A vLLM simulator: vLLM's HTTP API and metrics, timed by gpumix's performance model.

No vLLM simulator is installable here, and the dev cluster has no GPUs, so this stands in for
the vLLM container behind every kwok pod (started by the dev cluster's pod runner) and can be
run by hand with ``gpumix sim``. Its engine batches like vLLM V1 and takes, for each step, the
time ``gpumix.perf`` gives the pod's GPU type, tensor-parallel size and weight format.
"""

from gpumix.sim.engine import Engine, LoopClock, Sequence
from gpumix.sim.metrics import SimMetrics
from gpumix.sim.server import SimConfigError, SimulatorHandle, resolve, start_simulator
from gpumix.sim.settings import SimSettings, parse_vllm_args
from gpumix.sim.timing import StepTiming

__all__ = [
    "Engine",
    "LoopClock",
    "Sequence",
    "SimConfigError",
    "SimMetrics",
    "SimSettings",
    "SimulatorHandle",
    "StepTiming",
    "parse_vllm_args",
    "resolve",
    "start_simulator",
]
