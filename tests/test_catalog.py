"""The GPU and model catalogues as the planner and operator use them."""

from __future__ import annotations

import pytest

from gpumix.catalog import (
    CatalogError,
    custom_gpu_type,
    default_price,
    get_gpu,
    get_model,
    gpu_catalog,
    gpu_type_from_label,
    gpu_type_from_labels,
    model_catalog,
    resolve_model,
)
from gpumix.catalog.gpus import parse_gpu_catalog
from gpumix.errors import InputError, UnknownNameError

REQUIRED_GPUS = {"H100-80GB", "H200-141GB", "A100-80GB", "A100-40GB", "L40S", "L40", "A6000",
                 "A40", "RTX-4090", "A10G", "L4", "T4"}  # fmt: skip
REQUIRED_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct", "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mixtral-8x7B-Instruct-v0.1", "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-72B-Instruct",
    "google/gemma-2-9b-it", "google/gemma-2-27b-it",
}  # fmt: skip


def test_catalogues_hold_every_required_entry() -> None:
    assert set(gpu_catalog()) >= REQUIRED_GPUS
    assert set(model_catalog()) >= REQUIRED_MODELS


def test_fp8_support_follows_the_architecture() -> None:
    assert get_gpu("H100-80GB").supports_fp8
    assert get_gpu("L4").supports_fp8
    assert not get_gpu("A100-80GB").supports_fp8
    assert not get_gpu("T4").supports_fp8


def test_spot_is_cheaper_than_on_demand_and_reserved_in_between() -> None:
    for name in gpu_catalog():
        spot = default_price(name, "spot")
        reserved = default_price(name, "reserved")
        assert spot < default_price(name, "on-demand")
        assert reserved < default_price(name, "on-demand")


def test_unknown_capacity_type_is_an_input_error() -> None:
    with pytest.raises(UnknownNameError, match="preemptible"):
        default_price("L4", "preemptible")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("nvidia-tesla-t4", "T4"),
        ("nvidia-l4", "L4"),
        ("a10g", "A10G"),
        ("NVIDIA-A100-SXM4-80GB-SHARED", "A100-80GB"),
        ("NVIDIA-B200", None),
    ],
)
def test_cluster_label_values_map_to_catalogue_names(label: str, expected: str | None) -> None:
    assert gpu_type_from_label(label) == expected


def test_karpenter_a100_is_told_apart_by_gpu_memory() -> None:
    name = "karpenter.k8s.aws/instance-gpu-name"
    memory = "karpenter.k8s.aws/instance-gpu-memory"
    assert gpu_type_from_labels({name: "a100", memory: "40960"}) == "A100-40GB"
    assert gpu_type_from_labels({name: "a100", memory: "81920"}) == "A100-80GB"
    assert gpu_type_from_labels({"kubernetes.io/os": "linux"}) is None


def test_models_resolve_by_short_name_case_insensitively() -> None:
    assert get_model("llama-3.1-8b-instruct").name == "meta-llama/Llama-3.1-8B-Instruct"
    assert get_model("QWEN/qwen2.5-7b-instruct").kv_heads == 4


def test_mixtral_uses_active_parameters_for_compute_and_total_for_memory() -> None:
    mixtral = get_model("Mixtral-8x7B-Instruct-v0.1")
    assert mixtral.parameters_billions == pytest.approx(46.7)
    assert mixtral.compute_parameters_billions == pytest.approx(12.9)


def test_typo_names_close_matches() -> None:
    with pytest.raises(UnknownNameError) as error:
        get_gpu("H100-80G")
    assert "H100-80GB" in error.value.close_matches
    with pytest.raises(UnknownNameError, match="architecture"):
        resolve_model("acme/secret-model")


def test_inline_architecture_describes_any_model() -> None:
    spec = {"parametersBillions": 3.8, "layers": 32, "hiddenSize": 3072, "attentionHeads": 32,
            "kvHeads": 32, "headDim": 96, "intermediateSize": 8192, "vocabSize": 32064}  # fmt: skip
    model = resolve_model("microsoft/Phi-3-mini-4k-instruct", spec)
    assert model.layers == 32 and model.active_parameters_billions is None
    with pytest.raises(InputError, match=r"spec\.model\.architecture\.kvHeads"):
        resolve_model("x/y", {**spec, "kvHeads": 5})
    with pytest.raises(InputError, match="layers"):
        resolve_model("x/y", {**spec, "layers": "many"})


def test_inline_architecture_says_whether_its_embeddings_are_tied() -> None:
    spec = {"parametersBillions": 1.24, "layers": 16, "hiddenSize": 2048, "attentionHeads": 32,
            "kvHeads": 8, "headDim": 64, "intermediateSize": 8192, "vocabSize": 128256}  # fmt: skip
    assert not resolve_model("x/y", spec).tied_embeddings
    assert resolve_model("x/y", {**spec, "tiedEmbeddings": True}).tied_embeddings
    with pytest.raises(InputError, match=r"spec\.model\.architecture\.tiedEmbeddings"):
        resolve_model("x/y", {**spec, "tiedEmbeddings": "yes"})
    # a total smaller than its own embeddings is a typo, not a model
    with pytest.raises(InputError, match=r"spec\.model\.architecture\.parametersBillions"):
        resolve_model("x/y", {**spec, "parametersBillions": 0.3})


def test_custom_gpu_from_a_pool_spec() -> None:
    spec = {"memoryGiB": 96, "bf16TFLOPS": 500, "memoryBandwidthGBps": 4000,
            "interconnectGBps": 900}  # fmt: skip
    gpu = custom_gpu_type("MI-X", spec, gpus_per_node=8, price_per_gpu_hour=2.0)
    assert gpu.interconnect == "NVLink" and not gpu.supports_fp8
    with pytest.raises(InputError, match=r"spec\.gpu\.memoryGiB"):
        custom_gpu_type("MI-X", {**spec, "memoryGiB": -1}, gpus_per_node=8, price_per_gpu_hour=2)


def test_a_catalogue_entry_without_a_price_source_is_rejected() -> None:
    good = {
        "memoryGiB": 24, "bf16TFLOPS": 100, "fp8TFLOPS": None, "memoryBandwidthGBps": 300,
        "interconnect": "PCIe", "interconnectGBps": 64, "gpusPerNode": 8,
        "onDemandPrice": 1.0, "spotPrice": 0.5,
        "sources": {"specs": "a", "labels": "b", "onDemandPrice": "c", "spotPrice": "d",
                    "retrieved": "e"},
    }  # fmt: skip
    assert parse_gpu_catalog({"G": good})["G"].memory_gib == 24
    bad = {**good, "sources": {"specs": "a"}}
    with pytest.raises(CatalogError, match=r"G\.sources\.labels"):
        parse_gpu_catalog({"G": bad})
    with pytest.raises(CatalogError, match="interconnect"):
        parse_gpu_catalog({"G": {**good, "interconnect": "Ethernet"}})
