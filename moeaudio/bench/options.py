"""Options of `moeaudio bench adapter` and `moeaudio bench train`, light enough for `moeaudio --help`."""

from __future__ import annotations

from dataclasses import dataclass

from moeaudio.options import RecipeOptions, option

__all__ = ["BenchAdapterOptions", "BenchTrainOptions", "GpuSmokeOptions"]


@dataclass
class BenchAdapterOptions:
    """What `moeaudio bench adapter` takes (every field but ``as_json`` is a ``bench_adapter`` argument)."""

    preset: str = option(
        "routed", "sizes: routed (experts alone) | paper (with the 10240 shared path) | quickstart"
    )
    tokens: str | None = option(
        None, "audio tokens per call, comma-separated for several (default: the preset's)"
    )
    d_in: int | None = option(None, "adapter input width (default: the preset's)")
    d_out: int | None = option(None, "expert output width (default: the preset's)")
    num_experts: int | None = option(None, "routed experts E (default: the preset's)", flag="--experts")
    top_k: int | None = option(None, "experts per token k (default: the preset's)")
    expert_dim: int | None = option(None, "expert hidden width h (default: the preset's)")
    shared_dim: int | None = option(None, "always-on shared MLP width, 0 for none (default: the preset's)")
    device: str = option("cpu", "cpu | cuda")
    dtype: str = option("float32", "float32 | bfloat16 | float16")
    repeats: int = option(5, "timed rounds after one warm-up (median kept)")
    clock: str = option("wall", "wall | cpu (one thread, its CPU time: steady on a busy machine)")
    as_json: bool = option(False, "print one JSON object", flag="--json")


@dataclass
class BenchTrainOptions(RecipeOptions):
    """What `moeaudio bench train` takes: a recipe, its overrides, and how long to measure."""

    steps: int = option(8, "timed optimizer steps per arm and round")
    rounds: int = option(3, "interleaved rounds (the median is kept)")
    warmup: int = option(2, "untimed steps per arm before the first round")
    as_json: bool = option(False, "print one JSON object", flag="--json")


@dataclass
class GpuSmokeOptions:
    """What `moeaudio bench gpu-smoke` takes."""

    steps: int = option(20, "optimizer steps per arm (bf16, ZeRO-2)")
    layers: int = option(2, "encoder and LLM layers kept (the paper's widths, random weights)")
    micro_batch: int = option(8, "examples per step")
    warmup: int = option(5, "first steps left out of the timings")
    corpus: str | None = option(
        None, "a prepared synthetic corpus (default: the tiny one, made in a temp folder)"
    )
    as_json: bool = option(False, "print one JSON object", flag="--json")
