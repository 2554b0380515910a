"""What gpumix sets on a vLLM container itself, so ``spec.serving`` may not set it too.

The plan decides GPU type, tensor-parallel size and weight format; the Service, the probes and
the router decide port, host and served names. A user argument that repeats one of these wins
(vLLM's argparse keeps the last value), and the replica then serves something other than what
the planner priced, or listens where nothing looks. An environment variable such as
``NVIDIA_VISIBLE_DEVICES=all`` is worse: under the device plugin's default settings it exposes
every GPU of the node to one pod.

How vLLM reads its command line decides what counts as "setting" a flag (its
``FlexibleArgumentParser``, an ``argparse.ArgumentParser`` with the default
``allow_abbrev=True``): ``--flag value`` and ``--flag=value``; underscores for dashes
(``--tensor_parallel_size``); any unambiguous prefix (``--tensor-parallel``); and a short
flag with its value attached (``-tp4``, ``-qfp8``). Each of these is refused here.
"""

from __future__ import annotations

from collections.abc import Mapping

_FROM_THE_PLAN = "is set by gpumix from the plan"
_GPUS_FROM_THE_PLAN = "would change the GPUs per replica, which gpumix sets from the plan"
_FROM_THE_SERVICE = "is set by gpumix from spec.serving.port and the Service"
_FROM_THE_MODEL = "is set by gpumix from spec.model"
_PRICED = "is set by gpumix to the scheduler limit the planner's capacities assume"
_NAMES_FOR_THE_ROUTER = "is set by gpumix (the router and metrics rely on the served names)"

# Long flag -> why gpumix owns it. Every flag `operator.manifests.vllm_args` emits is here (a
# unit test holds the two together), plus flags that would make a replica need more GPUs than
# its pod requests (pipeline and data parallelism) or listen where the Service does not look.
OWNED_FLAGS: Mapping[str, str] = {
    "--model": _FROM_THE_MODEL,
    "--served-model-name": _NAMES_FOR_THE_ROUTER,
    "--tensor-parallel-size": _FROM_THE_PLAN,
    "--pipeline-parallel-size": _GPUS_FROM_THE_PLAN,
    "--data-parallel-size": _GPUS_FROM_THE_PLAN,
    "--max-model-len": "is set by gpumix from spec.model.maxModelLen",
    "--max-num-seqs": _PRICED,
    "--max-num-batched-tokens": _PRICED,
    "--quantization": _FROM_THE_PLAN,
    "--dtype": _FROM_THE_PLAN,
    "--port": _FROM_THE_SERVICE,
    "--host": _FROM_THE_SERVICE,
}

# vLLM's short spellings of owned flags.
OWNED_SHORT_FLAGS: Mapping[str, str] = {
    "-tp": "--tensor-parallel-size",
    "-pp": "--pipeline-parallel-size",
    "-dp": "--data-parallel-size",
    "-q": "--quantization",
}

# The directory gpumix mounts writable for the non-root user, and the Hugging Face cache.
HOME_ENV = "HOME"
HF_HOME_ENV = "HF_HOME"
USER_ENV = "USER"

OWNED_ENV: Mapping[str, str] = {
    "NVIDIA_VISIBLE_DEVICES": "is set by the GPU device plugin; overriding it can expose "
    "every GPU of the node",
    "CUDA_VISIBLE_DEVICES": "is set by the GPU device plugin; overriding it can hide the "
    "GPUs of the pod or share them",
    HOME_ENV: "is set by gpumix to a writable volume (the pod runs as a non-root user)",
    HF_HOME_ENV: "is set by gpumix to the model cache; use spec.serving.modelCache",
    USER_ENV: "is set by gpumix for the non-root user (PyTorch looks the user name up)",
}


def owned_flag(argument: str) -> str | None:
    """The owned long flag that ``argument`` sets as vLLM parses it, or None."""
    if argument.startswith("--"):
        name = argument.split("=", 1)[0].replace("_", "-")
        if len(name) <= len("--"):
            return None  # `--` alone ends the options
        for flag in OWNED_FLAGS:
            # an exact match, or an abbreviation argparse would expand (ambiguous ones fail
            # in vLLM anyway, so refusing them costs nothing)
            if flag.startswith(name):
                return flag
        return None
    for short, flag in OWNED_SHORT_FLAGS.items():
        if argument.startswith(short):  # -tp, -tp=4, -tp4
            return flag
    return None


def owned_argument_problem(argument: str) -> str | None:
    """Why ``argument`` may not appear in spec.serving.extraArgs, or None when it may."""
    flag = owned_flag(argument)
    if flag is None:
        return None
    spelled = argument.split("=", 1)[0]
    shown = flag if spelled == flag else f"{spelled} (that is, {flag})"
    return f"{shown} {OWNED_FLAGS[flag]}"


def owned_env_problem(name: str) -> str | None:
    """Why an environment variable ``name`` may not appear in spec.serving.env, or None."""
    reason = OWNED_ENV.get(name)
    return None if reason is None else f"{name} {reason}"
