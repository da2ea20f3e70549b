"""`moeaudio bench gpu-smoke`: the paper's Table 1 recipes on one GPU, in minutes, before a cluster run.

What a cluster run depends on and no CPU test exercises: bf16 autocast in the engine, DeepSpeed
ZeRO-2's partitioned optimizer, the grouped-GEMM expert dispatch (``torch._grouped_mm``, CUDA only) and
the paper's widths on the accelerator. This check builds ``paper/table1_moe`` and
``paper/table1_dense`` as they are (adapter, frame stacking, projection, the balance loss's
normalisation) with the encoder and the LLM cut to a few layers of the paper's widths and random
weights (no hub here: Whisper-large-v3's 1280-d, 20 heads, 128 mel bins; Qwen3-1.7B's 2048-d, 16 heads,
8 KV heads, 6144 FFN, as a Qwen2 config), runs ``steps`` optimizer steps of each under ZeRO-2 in bf16
on the built-in synthetic corpus (the encoder in the step: no feature cache, as the paper recipes),
and reports per arm the peak GPU memory, tokens/s and the median step time, plus MoE / dense.

On a machine without CUDA it refuses before building anything.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from moeaudio.config import Recipe, load_recipe
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.data.synth import make_synth_corpus
from moeaudio.errors import UsageError
from moeaudio.model.audio_llm import build_audio_llm
from moeaudio.model.dispatch import grouped_unsupported_reason
from moeaudio.runtime.batching import Collator, example_length
from moeaudio.runtime.examples import load_examples, manifest_path, recipe_items, select_items
from moeaudio.runtime.vocabulary import recipe_tokenizer
from moeaudio.train.distributed import init_distributed
from moeaudio.train.engine import build_engine, seed_everything

__all__ = ["ARMS", "gpu_smoke", "paper_cut", "render_gpu_smoke", "require_cuda"]

ARMS = ("paper/table1_dense", "paper/table1_moe")
#: Whisper-large-v3's encoder widths (its config.json), layers cut.
WHISPER_LARGE_V3 = dict(
    d_model=1280, encoder_attention_heads=20, encoder_ffn_dim=5120, num_mel_bins=128,
    decoder_layers=1, decoder_attention_heads=20, decoder_ffn_dim=5120, max_source_positions=1500,
)  # fmt: skip
#: Qwen3-1.7B's decoder widths (its config.json), layers cut; a Qwen2 config (no QK-norm).
QWEN3_1_7B = dict(
    intermediate_size=6144, num_attention_heads=16, num_key_value_heads=8, max_position_embeddings=4096,
    tie_word_embeddings=True, rope_theta=1_000_000.0,
)  # fmt: skip


def require_cuda() -> str:
    """The GPU's name, or :class:`UsageError` saying why this machine cannot run the check."""
    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = (
            f"this torch {torch.__version__} is a CPU-only build"
            if built is None
            else f"torch {torch.__version__} (CUDA {built}) sees no GPU: no driver, or CUDA_VISIBLE_DEVICES hides it"
        )
        raise UsageError(
            f"bench gpu-smoke needs a CUDA GPU and {why}. It checks bf16, DeepSpeed ZeRO-2 and the grouped-GEMM "
            "expert dispatch at the paper's widths, none of which a CPU runs: run it on a GPU machine "
            "(one GPU, under 10 minutes), e.g. `srun --gpus=1 moeaudio bench gpu-smoke`"
        )
    return torch.cuda.get_device_name(0)


def paper_cut(name: str, corpus: Path, layers: int, micro_batch: int, steps: int) -> Recipe:
    """The shipped paper recipe ``name`` with encoder and LLM cut to ``layers`` layers of the paper's
    widths (random weights) and the run settings of the check; the adapter is left as the paper's."""
    return load_recipe(
        name,
        [
            "encoder.name=tiny",
            f"encoder.tiny={dict(WHISPER_LARGE_V3, encoder_layers=layers)}",
            "llm.name=tiny",
            "llm.tokenizer=builtin",
            f"llm.tiny={dict(QWEN3_1_7B, num_hidden_layers=layers)}",
            f"data.root={corpus}",
            "data.mixture=null",
            "data.feature_cache=null",
            f"data.micro_batch_size={micro_batch}",
            "train.global_batch_size=null",
            "train.max_tokens=null",
            f"train.max_steps={steps}",
            "train.grad_accum=1",
            "train.zero_stage=2",
            "train.precision=bf16",
            "adapter.backend=grouped",
        ],
    )


def _arm(recipe: Recipe, corpus_items: int, steps: int, warmup: int) -> dict[str, Any]:
    manifest = manifest_path(recipe, "train")
    items = select_items(recipe, recipe_items(manifest, recipe, "gpu-smoke (the synthetic train split)"))
    items = items[:corpus_items]
    seed_everything(recipe.train.seed)
    model = build_audio_llm(recipe, tokenizer=recipe_tokenizer(recipe))
    examples = load_examples(model, manifest, recipe, progress=False, items=items)
    order = BucketBatchSampler([example_length(e) for e in examples], recipe.data.micro_batch_size, seed=0)
    batches = order.epoch_batches(0)
    collate = Collator(model)
    torch.cuda.reset_peak_memory_stats()
    engine = build_engine(model, recipe, 1).engine
    engine.train()
    times, tokens = [], []
    for i in range(steps):
        batch = collate([examples[j] for j in batches[i % len(batches)]]).to(engine.device)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = engine(batch)
        engine.backward(out["loss"])
        engine.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        tokens.append(int(batch.attention_mask.sum()))
    timed, timed_tokens = times[warmup:], tokens[warmup:]
    median = statistics.median(timed)
    result = {
        "recipe": recipe.name,
        "adapter": recipe.adapter.kind,
        "backend": recipe.adapter.backend if recipe.adapter.kind == "moe" else None,
        "steps": steps,
        "final_loss": round(float(out["loss"]), 4),
        "step_s_median": round(median, 4),
        "tokens_per_s": round(sum(timed_tokens) / sum(timed), 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "params": sum(p.numel() for p in model.parameters()),
    }
    del engine, model, examples
    torch.cuda.empty_cache()
    return result


def gpu_smoke(
    steps: int = 20, layers: int = 2, micro_batch: int = 8, warmup: int = 5, corpus: str | None = None
) -> dict[str, Any]:
    """Both Table 1 arms cut to ``layers`` layers, ``steps`` bf16 ZeRO-2 steps each; see the module
    docstring. ``corpus``: a prepared synthetic corpus (default: the tiny one, made in a temp folder)."""
    gpu = require_cuda()
    if steps <= warmup:
        raise UsageError(f"--steps {steps} must exceed the {warmup} warm-up steps")
    init_distributed()
    reason = grouped_unsupported_reason(torch.device("cuda"), torch.bfloat16, (2560, 1280, 2048))
    if reason:
        raise UsageError(f"bench gpu-smoke: the grouped-GEMM dispatch cannot run here: {reason}")
    with tempfile.TemporaryDirectory(prefix="moeaudio-gpu-smoke-") as tmp:
        root = Path(corpus) if corpus else Path(tmp) / "synth"
        if not (root / "train.jsonl").exists():
            make_synth_corpus(root, seed=0, size="tiny", progress=False)
        need = micro_batch * steps
        arms = {
            name.split("_")[-1]: _arm(paper_cut(name, root, layers, micro_batch, steps), need, steps, warmup)
            for name in ARMS
        }
    return {
        "gpu": gpu,
        "torch": torch.__version__,
        "layers": layers,
        "micro_batch_size": micro_batch,
        "arms": arms,
        "moe_over_dense_step_time": round(arms["moe"]["step_s_median"] / arms["dense"]["step_s_median"], 3),
    }


def render_gpu_smoke(result: dict[str, Any]) -> str:
    lines = [
        f"gpu-smoke on {result['gpu']} (torch {result['torch']}): paper Table 1 recipes, encoder and LLM cut to "
        f"{result['layers']} layers, micro-batch {result['micro_batch_size']}, bf16, ZeRO-2"
    ]
    for name, arm in result["arms"].items():
        backend = f", {arm['backend']} dispatch" if arm["backend"] else ""
        lines.append(
            f"  {name:<6} {arm['params'] / 1e6:7.1f}M params{backend}: step {arm['step_s_median'] * 1000:.1f} ms "
            f"(median), {arm['tokens_per_s']:,.0f} tokens/s, peak {arm['peak_memory_gib']} GiB, "
            f"loss after {arm['steps']} steps {arm['final_loss']}"
        )
    lines.append(f"  MoE / dense step time: {result['moe_over_dense_step_time']}")
    return "\n".join(lines)
