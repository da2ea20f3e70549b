"""`moeaudio bench adapter | train`: the options in, a JSON object or a table out."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict

from rich.console import Console

from moeaudio.bench.adapter import bench_adapter, render_bench
from moeaudio.bench.gpu_smoke import gpu_smoke, render_gpu_smoke
from moeaudio.bench.options import BenchAdapterOptions, BenchTrainOptions, GpuSmokeOptions
from moeaudio.bench.train_step import bench_train, render_bench_train
from moeaudio.config import load_recipe
from moeaudio.options import print_json

__all__ = ["adapter_command", "gpu_smoke_command", "train_command"]


def adapter_command(opts: BenchAdapterOptions) -> None:
    result = bench_adapter(**{k: v for k, v in asdict(opts).items() if k != "as_json"})
    print_json(result) if opts.as_json else Console().print(render_bench(result))


def train_command(opts: BenchTrainOptions) -> None:
    recipe = load_recipe(opts.recipe, opts.overrides or [])
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints; stdout is for the result
        result = bench_train(recipe, steps=opts.steps, rounds=opts.rounds, warmup=opts.warmup)
    print_json(result) if opts.as_json else Console().print(render_bench_train(result))


def gpu_smoke_command(opts: GpuSmokeOptions) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints; stdout is for the result
        result = gpu_smoke(opts.steps, opts.layers, opts.micro_batch, opts.warmup, opts.corpus)
    print_json(result) if opts.as_json else Console().print(render_gpu_smoke(result), highlight=False)
