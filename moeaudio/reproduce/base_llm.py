"""The base LLM as a checkpoint, for the text columns of a study (``llm: base``).

Why: the paper's text columns are the same number for the dense and the MoE arm (MMSU text 52.86,
OBQA text 68.35), so they measure an LLM the adapter training did not change: the base LLM, asked
the questions in writing. Our recipes train the LLM, so evaluating each trained checkpoint in text
mode would give every arm its own text number, and the modality gap (audio - text) would mix the
adapter's effect with what training did to the LLM's knowledge. A column with ``llm: base`` is
evaluated once per study on the untrained model its arms start from (the recipe's ``llm.name``
weights; a tiny random LLM at CPU scale, seeded by ``train.seed``), and every arm reads that number.

The checkpoint is written as training writes one (weights, recipe, tokenizer, trainer state at
step 0) into ``OUTPUT/base-llm/<hash>``, the hash over what builds the LLM (the ``llm`` section,
the encoder's identity and the seed), so arms sharing their LLM share the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from moeaudio.config import Recipe
from moeaudio.model.audio_llm import build_audio_llm
from moeaudio.runtime.checkpoint import WEIGHTS
from moeaudio.runtime.vocabulary import recipe_tokenizer
from moeaudio.train.checkpoint import weights_to_save

__all__ = ["BASE_DIR", "base_llm_checkpoint", "base_llm_key"]

BASE_DIR = "base-llm"


def base_llm_key(recipe: Recipe) -> str:
    """What decides the base model's weights and tokenizer, hashed."""
    data = recipe.model_dump(mode="json")
    key = {
        "llm": data["llm"],
        "encoder": data["encoder"],
        "seed": recipe.train.seed,
        "vocab_root": recipe.data.root,
    }
    return hashlib.sha256(yaml.safe_dump(key, sort_keys=True).encode()).hexdigest()[:16]


def base_llm_checkpoint(recipe: Recipe, study_output: Path) -> Path:
    """The base model of ``recipe`` as a checkpoint under ``study_output/base-llm/`` (written once)."""
    folder = study_output / BASE_DIR / base_llm_key(recipe)
    if (folder / WEIGHTS).exists():
        return folder
    torch.manual_seed(recipe.train.seed)  # a random (tiny) LLM or adapter: the same one for every arm
    model = build_audio_llm(recipe, tokenizer=recipe_tokenizer(recipe))
    # cloned: tied weights (embeddings and LM head) must not share memory in a safetensors file
    state = {
        k: v.detach().clone().contiguous() for k, v in weights_to_save(model, model.state_dict()).items()
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:  # written aside and renamed: a killed study never leaves half a checkpoint
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "step": "0"})
        (tmp / "recipe.yaml").write_text(model.recipe.to_yaml())
        model.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / "trainer_state.json").write_text(json.dumps({"step": 0, "history": [], "base_llm": True}))
        if (folder / WEIGHTS).exists():  # written meanwhile by another collector
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
