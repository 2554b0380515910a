"""Analytical performance model of vLLM serving one model on one GPU configuration (pure).

``predict(model, config, shape, slo, max_model_len)`` answers: does the configuration fit,
and how many requests/s of this class can one replica serve within the TTFT/TPOT targets?
It is deterministic and costs well under a millisecond (binary search over the batch), so
the solver can screen thousands of candidates.

The parts, each in its own module:

- ``counts``: parameters, streamed bytes and FLOPs from the architecture (tied or untied
  embeddings, vocabulary, GQA, MoE active experts);
- ``memory``: weights per GPU, KV bytes per token, KV capacity under vLLM's 0.9 budget;
- ``timing``: one engine step as the sum of per-phase rooflines (weight GEMMs, attention,
  per-step overhead, tensor-parallel all-reduce), for any mix of decodes and prompt chunks;
- ``serving``: continuous batching with chunked prefill, TPOT/TTFT/requests-per-second at a
  batch, and the largest batch within the SLO;
- ``constants``: every constant with where it comes from; ``h200`` and ``calibration``: the
  measurements they are checked against (``make calibrate``).

Formulas, constants and both calibration tables: docs/perf-model.md. The model structure
follows Melange (Griggs et al. 2024, arXiv 2404.14527) and Jiang et al., "Demystifying
Cost-Efficiency in LLM Serving over Heterogeneous GPUs" (ICML 2025): throughput per
configuration and request class under a latency SLO.
"""

from gpumix.perf.constants import BYTES_PER_PARAMETER, GPU_MEMORY_UTILIZATION, MAX_NUM_SEQS
from gpumix.perf.memory import kv_bytes_per_token_per_gpu, kv_capacity_tokens
from gpumix.perf.predict import configuration_problem, predict
from gpumix.perf.timing import decode_step_seconds, prefill_seconds
from gpumix.perf.values import LatencySLO, Prediction, RequestShape, ServingConfig, WeightFormat

__all__ = [
    "BYTES_PER_PARAMETER",
    "GPU_MEMORY_UTILIZATION",
    "MAX_NUM_SEQS",
    "LatencySLO",
    "Prediction",
    "RequestShape",
    "ServingConfig",
    "WeightFormat",
    "configuration_problem",
    "decode_step_seconds",
    "kv_bytes_per_token_per_gpu",
    "kv_capacity_tokens",
    "predict",
    "prefill_seconds",
]
