"""Named constants of the performance model: vLLM defaults, byte sizes and efficiencies.

Efficiencies are fractions of the datasheet peak that vLLM reaches; they are calibrated in
:mod:`gpumix.perf.calibration` (run ``python -m gpumix.perf.calibration``).
"""

from __future__ import annotations

from types import MappingProxyType

from gpumix.perf.values import WeightFormat

GIB = 1024**3
GB = 1e9  # bandwidths are quoted in decimal GB/s
TERA = 1e12

# vLLM's --gpu-memory-utilization default: the fraction of each GPU's memory vLLM budgets for
# weights, activations and KV cache.
GPU_MEMORY_UTILIZATION = 0.9

# Memory vLLM takes before the KV cache besides the weights: CUDA context, the activation
# peak of the profiling run (max_num_batched_tokens), CUDA graphs and NCCL buffers. vLLM's
# startup log ("model weights take X GiB; non_torch_memory ...; PyTorch activation peak ...")
# shows 1-3 GiB for 1B-70B models; we take the middle.
RUNTIME_RESERVE_GIB = 2.0

# vLLM's default --max-num-seqs: the scheduler never runs more sequences than this at once.
MAX_NUM_SEQS = 256

# Bytes per weight. int4 (AWQ/GPTQ, group size 128) stores 4 bits plus an fp16 scale and
# zero point per group, and checkpoints keep embeddings and lm_head in 16 bits: ~4.5 bits.
BYTES_PER_PARAMETER = MappingProxyType(
    {
        WeightFormat.BF16: 2.0,
        WeightFormat.FP8: 1.0,
        WeightFormat.INT8: 1.0,
        WeightFormat.INT4: 0.5625,
    }
)

# KV cache in bf16 (vLLM's --kv-cache-dtype auto follows the activation dtype).
KV_CACHE_BYTES_PER_ELEMENT = 2
# Activations are 16-bit for every weight format (fp8 is W8A8 but all-reduces stay bf16).
ACTIVATION_BYTES = 2

# Fraction of peak HBM/GDDR bandwidth decode reaches. Calibrated: Llama-3.1-8B at batch 1
# decodes at 6.48 ms/token on H100 and ~13.3 ms on A100-40GB, which solve to 0.80 with the
# step overhead below (see docs/perf-model.md).
MEMORY_BANDWIDTH_EFFICIENCY = 0.80

# Fraction of dense tensor-core peak reached by vLLM's GEMMs (prefill, and decode once it
# turns compute-bound). No published TTFT with a known prompt length was found to calibrate
# it; 0.6 is the model FLOPs utilisation commonly reported for large-batch GEMMs and is
# cross-checked by the RTX 4090 closed-loop throughput in the calibration table.
COMPUTE_EFFICIENCY = 0.60

# Per decode step: scheduling, sampling, detokenisation, kernel launch gaps (vLLM V1 with
# CUDA graphs). Calibrated together with MEMORY_BANDWIDTH_EFFICIENCY.
STEP_OVERHEAD_SECONDS = 0.0005

# Latency of one tensor-parallel all-reduce of a small message (two per layer per step);
# vLLM's custom all-reduce on NVLink is a few microseconds, NCCL over PCIe is slower.
ALLREDUCE_LATENCY_SECONDS = MappingProxyType({"NVLink": 8e-6, "PCIe": 25e-6})
