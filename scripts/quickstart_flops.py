"""FLOPs of quickstart training steps, counted by torch's FlopCounterMode (docs/benchmarks.md).

Builds the quickstart model, reads the cached encoder states of the first batches of the train
split (run the quickstart once first, or `moeaudio prepare-features quickstart`), and counts one
forward+backward per batch. The routed experts' grouped GEMMs are not seen by the counter (count
them by hand: audio tokens x top_k x (in x expert_dim + expert_dim x out) x 2 x 3).

    python scripts/quickstart_flops.py [RECIPE] [section.key=value ...]
"""

from __future__ import annotations

import sys

from torch.utils.flop_counter import FlopCounterMode

from moeaudio.config import load_recipe
from moeaudio.data.loader import BucketBatchSampler
from moeaudio.model.audio_llm import build_audio_llm
from moeaudio.runtime.batching import Collator, example_length
from moeaudio.runtime.examples import checked_items, load_examples, manifest_path, select_items
from moeaudio.runtime.vocabulary import recipe_tokenizer

BATCHES = 5


def main(argv: list[str]) -> None:
    recipe = load_recipe(argv[0] if argv else "quickstart", argv[1:])
    model = build_audio_llm(recipe, tokenizer=recipe_tokenizer(recipe))
    manifest = manifest_path(recipe, "train")
    size = recipe.data.micro_batch_size
    items = select_items(recipe, checked_items(manifest, recipe))[: size * (BATCHES + 1)]
    examples = load_examples(model, manifest, recipe, progress=False, items=items)
    order = BucketBatchSampler([example_length(e) for e in examples], size, seed=0).epoch_batches(0)
    collate = Collator(model)
    model.train()
    for idx in order[:BATCHES]:
        batch = collate([examples[i] for i in idx])
        with FlopCounterMode(display=False) as counter:
            model(batch)["loss"].backward()
        parts = {k: sum(v.values()) / 1e9 for k, v in counter.get_flop_counts().items() if k.count(".") == 2}
        print(
            f"{counter.get_total_flops() / 1e9:.1f} GFLOP, {int(batch.attention_mask.sum())} tokens; "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        )


if __name__ == "__main__":
    main(sys.argv[1:])
