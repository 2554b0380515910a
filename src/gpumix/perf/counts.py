"""Exact parameter, byte and FLOP counts of one forward step, from the architecture.

A decoder is an input embedding (vocab x hidden), L layers (attention + MLP or experts), and
an output projection, lm_head (hidden x vocab), which is the embedding itself when the model
ties them. The three parts cost differently:

- the **embedding** is a table lookup: a step reads one row per token, never the matrix;
- the **layers** run a GEMM over every token of the step;
- **lm_head** runs only for the tokens that are sampled: one per decoding sequence, and one
  per prompt, at its end (vLLM computes logits for sampled positions only).

So a decode step streams the layers plus lm_head (15.0 GB for Llama-3.1-8B in bf16, not the
16.1 GB of all 8.03 B parameters), and a prompt of S tokens costs 2 x layers x S FLOPs plus
one lm_head, not 2 x all parameters x S (+15 % for Llama-3.1-8B, +17 % for Qwen2.5-7B, whose
152 k vocabulary makes its lm_head 0.55 B parameters). Quantised checkpoints quantise the
layers and keep the embedding and lm_head in 16 bits (vLLM's fp8, AWQ and GPTQ all do).
"""

from __future__ import annotations

from gpumix.catalog import ModelArchitecture
from gpumix.perf.constants import BYTES_PER_PARAMETER, EMBEDDING_BYTES_PER_PARAMETER
from gpumix.perf.values import WeightFormat


def embedding_parameters(model: ModelArchitecture) -> float:
    return float(model.vocab_size * model.hidden_size)


def lm_head_parameters(model: ModelArchitecture) -> float:
    """The output projection: as large as the embedding, tied or not (tied: the same one)."""
    return embedding_parameters(model)


def stored_embedding_parameters(model: ModelArchitecture) -> float:
    """Embedding and lm_head as stored: one matrix when tied, two when not."""
    return embedding_parameters(model) * (1 if model.tied_embeddings else 2)


def layer_parameters(model: ModelArchitecture) -> float:
    """Every parameter of the L layers (all experts for MoE): the total minus the embeddings.

    Taken from the published total rather than rebuilt from the shapes, so biases, norms and
    routers of any architecture are counted without knowing them.
    """
    return model.parameters_billions * 1e9 - stored_embedding_parameters(model)


def attention_parameters(model: ModelArchitecture) -> float:
    """Q, K, V and O projections of all layers: h x d x (2H + 2H_kv) per layer."""
    per_layer = (
        model.hidden_size * model.head_dim * (2 * model.attention_heads + 2 * model.kv_heads)
    )
    return float(model.layers * per_layer)


def expert_parameters(model: ModelArchitecture) -> float:
    """The MLP (dense) or all experts (MoE) of all layers: the layers minus attention."""
    return max(0.0, layer_parameters(model) - attention_parameters(model))


def active_expert_fraction(model: ModelArchitecture) -> float:
    """The share of the MLP/expert weights one token passes through: 1 for a dense model, top-k
    of E experts for MoE (2/8 for Mixtral), from the published active count, which (as
    Mistral's 12.9 B does) includes attention and the embeddings."""
    if model.active_parameters_billions is None:
        return 1.0
    experts = expert_parameters(model)
    if experts <= 0:
        return 1.0
    always = attention_parameters(model) + stored_embedding_parameters(model)
    active_experts = model.active_parameters_billions * 1e9 - always
    return min(1.0, max(active_experts / experts, 1e-6))


def active_layer_parameters(model: ModelArchitecture) -> float:
    """Layer parameters one token's GEMMs multiply with: attention plus its experts."""
    return attention_parameters(model) + expert_parameters(model) * active_expert_fraction(model)


def layer_parameters_read(model: ModelArchitecture, tokens: float) -> float:
    """Layer parameters a step over `tokens` tokens streams from memory.

    Dense: all of them. MoE: attention always; each expert is read when at least one of the
    tokens routes to it, with probability 1 - (1 - k/E)^tokens under uniform routing, so the
    read grows from the active experts at one token to all of them.
    """
    fraction = active_expert_fraction(model)
    touched = 1.0 if fraction >= 1.0 else 1.0 - (1.0 - fraction) ** max(tokens, 1.0)
    return attention_parameters(model) + expert_parameters(model) * touched


def layer_bytes_per_parameter(weight_format: WeightFormat) -> float:
    return BYTES_PER_PARAMETER[weight_format]


def weight_bytes(model: ModelArchitecture, weight_format: WeightFormat) -> float:
    """All stored weights: layers in the weight format, the embeddings in 16 bits."""
    return (
        layer_parameters(model) * layer_bytes_per_parameter(weight_format)
        + stored_embedding_parameters(model) * EMBEDDING_BYTES_PER_PARAMETER
    )


def layer_bytes_read(model: ModelArchitecture, weight_format: WeightFormat, tokens: float) -> float:
    return layer_parameters_read(model, tokens) * layer_bytes_per_parameter(weight_format)


def lm_head_bytes(model: ModelArchitecture) -> float:
    return lm_head_parameters(model) * EMBEDDING_BYTES_PER_PARAMETER


def gemm_flops(model: ModelArchitecture, tokens: float, sampled: float) -> float:
    """Weight-GEMM FLOPs of a step: the layers over every token, lm_head over the sampled."""
    return 2 * active_layer_parameters(model) * tokens + 2 * lm_head_parameters(model) * sampled


def attention_flops(model: ModelArchitecture, query_key_pairs: float) -> float:
    """QK^T and AV (2 matmuls x 2 FLOPs) over `query_key_pairs` (query token, earlier token)
    pairs, all layers and query heads: a prompt of S tokens has S^2/2 pairs (causal)."""
    return 4 * model.layers * model.attention_heads * model.head_dim * query_key_pairs
