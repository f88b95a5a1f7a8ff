"""Published serving runs capsim had not seen, fed to ``capsim validate serving`` as a new user would
(TensorRT-LLM docs/source/performance/perf-overview.md v1.0 and 0.17, NIM benchmarking 1.0.0 docs)."""

import pytest


@pytest.mark.parametrize(("spelling", "name"), [("H100 80GB HBM3", "H100-SXM5-80GB"),  # perf-overview.md 0.17
                                                ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),  # CUDA's device name
                                                ("H100 SXM 80GB", "H100-SXM5-80GB"),  # perf-overview.md 1.0
                                                ("H200 141GB HBM3", "H200-SXM-141GB"),
                                                ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
                                                ("B200 180GB", "B200"), ("GB200 192GB", "GB200")])
def test_the_gpu_spellings_of_published_tables_name_catalog_accelerators(spelling, name):
    from capsim.specs.catalog import get_accelerator

    assert get_accelerator(spelling).name == name


@pytest.mark.parametrize(("checkpoint", "name"), [("nvidia/Llama-3.1-8B-Instruct-FP8", "llama-3.1-8b"),
                                                  ("nvidia/Qwen3-235B-A22B-FP8", "qwen3-235b-a22b"),
                                                  ("nvidia/Qwen3-30B-A3B-FP4", "qwen3-30b-a3b")])
def test_a_quantized_checkpoint_name_is_its_models_shape(checkpoint, name):
    from capsim.specs.catalog import get_model

    assert get_model(checkpoint).name == name
