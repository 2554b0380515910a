"""Named constants of the performance model: vLLM defaults, byte sizes and efficiencies.

Each efficiency is a fraction of a datasheet peak and names where it comes from. "H200" means
the measurements in ``gpumix/perf/data/h200-llama-3.1-8b-bf16.json`` (one NVIDIA H200, a
Llama-3.1-8B-shaped decoder, cuBLAS GEMMs and SDPA attention under CUDA graphs; its
``about`` field says exactly what ran). ``make calibrate`` prints every H200 point and every
published vLLM point with the model's error.
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

# The scheduler limits gpumix pins on every replica (operator.manifests), so the replica runs
# what the model prices whatever vLLM's version-dependent defaults are (vLLM 0.11 picks 8192
# tokens and 1024 sequences on >= 70 GiB GPUs other than A100, 2048 and 256 elsewhere).
# --max-num-seqs: never more sequences in one step. --max-num-batched-tokens: the token budget
# of one step, decodes first, then chunks of prompts (chunked prefill, vLLM V1's default).
MAX_NUM_SEQS = 256
MAX_NUM_BATCHED_TOKENS = 8192

# Bytes per *layer* weight (the embedding and lm_head stay 16-bit: EMBEDDING_BYTES_PER_PARAMETER).
# int4 (AWQ/GPTQ, group size 128) stores 4 bits plus a 16-bit scale and a 16-bit zero point
# per group of 128: 4.25 bits.
BYTES_PER_PARAMETER = MappingProxyType(
    {
        WeightFormat.BF16: 2.0,
        WeightFormat.FP8: 1.0,
        WeightFormat.INT8: 1.0,
        WeightFormat.INT4: 0.53125,
    }
)
EMBEDDING_BYTES_PER_PARAMETER = 2.0

# KV cache in bf16 (vLLM's --kv-cache-dtype auto follows the activation dtype).
KV_CACHE_BYTES_PER_ELEMENT = 2
# Activations are 16-bit for every weight format (fp8 is W8A8 but all-reduces stay bf16).
ACTIVATION_BYTES = 2

# Fraction of peak memory bandwidth the weight GEMMs stream at, per weight format.
#   bf16: H200, the decode step's GEMMs at batch 1-8 read 15.01 GB in 4.01 ms = 3.74 TB/s,
#         0.78 of 4.8 TB/s (the read-only ceiling measured on the same GPU is 0.90).
#   fp8:  H200, the fp8 GEMM sweep reads 8.03 GB (fp8 layers, bf16 lm_head) in 2.40 ms at
#         batch 1-32: 0.70. Scaled-fp8 kernels stream less well than bf16 ones.
#   int8, int4: not measured; dequantising kernels (W8A16, Marlin W4A16) are taken to stream
#         like the fp8 ones (Marlin reports near the ideal 4x over fp16 at batch <= 16, which
#         would put int4 nearer 0.78: this is the cautious side).
GEMM_BANDWIDTH_EFFICIENCY = MappingProxyType(
    {
        WeightFormat.BF16: 0.78,
        WeightFormat.FP8: 0.70,
        WeightFormat.INT8: 0.70,
        WeightFormat.INT4: 0.70,
    }
)

# Fraction of peak bandwidth decode attention reads the KV cache at. H200: batch 64-256 at
# context 512-2048 read 4.3-68.7 GB of KV at 4.0-4.25 TB/s after the fixed latency below:
# 0.85 (cuDNN/FlashAttention stream K and V with long contiguous reads).
ATTENTION_BANDWIDTH_EFFICIENCY = 0.85

# Fraction of dense tensor-core peak reached by a compute-bound step (GEMMs, attention and the
# elementwise work between them, on the real FLOP count of gpumix.perf.counts). H200: prefill
# of 2048-4096 tokens and 8 x 512 tokens runs at 0.59 of 989.5 TFLOPS; the fp8 GEMMs reach
# 0.54-0.58 of the fp8 peak at batch 512-4096. The same figure as the previous model's prior,
# now on the right FLOP count.
COMPUTE_EFFICIENCY = 0.60

# A weight GEMM is bound by the longer of streaming its weights and its math, but the two do
# not overlap fully near the ridge point (tiles wait for their weights): the shorter of the two
# adds this fraction of itself. H200 bf16 GEMMs: 0.20 +- 0.03 at batch 32-128, where the two
# are within 4x of each other.
GEMM_OVERLAP_LOSS = 0.20

# Fixed latency of one attention kernel per layer, whatever the batch: launch, the softmax
# reduction's serial part, small-grid tails. H200: 0.43-0.44 ms for 32 layers at batch 1-8,
# context 512 (13.5 us per layer), where the KV read itself is < 0.1 ms.
ATTENTION_LAYER_SECONDS = 13.5e-6

# Per step: norms, rotary embedding, sampling and launch gaps between the kernels, growing with
# the sequences sampled in the step. H200, decode at context 512: 0.31 ms at batch 1, 0.76 ms
# at 128, 0.86 ms at 256 outside the GEMMs and attention: 0.3 ms + 2.5 us per sequence. vLLM's
# own CPU work (scheduling, detokenising) overlaps the GPU in V1 and is not added.
STEP_OVERHEAD_SECONDS = 0.0003
STEP_OVERHEAD_PER_SEQUENCE_SECONDS = 2.5e-6

# Latency of one tensor-parallel all-reduce of a small message (two per layer per step);
# vLLM's custom all-reduce on NVLink is a few microseconds, NCCL over PCIe is slower.
# Not calibrated (no multi-GPU measurement).
ALLREDUCE_LATENCY_SECONDS = MappingProxyType({"NVLink": 8e-6, "PCIe": 25e-6})
