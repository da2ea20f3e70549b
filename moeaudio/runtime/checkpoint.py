"""Find, resolve, check and load checkpoints: what eval, transcribe, analyze and resume share.

Layout of one checkpoint (``RUN/checkpoints/step-000200/``)::

    recipe.yaml           the resolved recipe (rebuilds the model)
    model.safetensors     consolidated weights (ZeRO-3 shards gathered); no pickle
    tokenizer/            the tokenizer with its audio placeholder and chat template
    trainer_state.json    step, seed, batches consumed, RNG states, metrics
    deepspeed/            DeepSpeed's own shards, for exact resume only
    checkpoint.json       the files above with their sizes, written last (see below)

An export (``moeaudio export``, :mod:`moeaudio.runtime.export`) is a directory :func:`load_model` reads
the same way: its recipe names files inside it (``./encoder``, ``./llm``, ``./tokenizer``), which are
resolved against the directory, and ``export.json`` says which weights live outside ``model.safetensors``.

Writing checkpoints needs the DeepSpeed engine and lives in ``moeaudio.train.checkpoint``; reading
them needs neither DeepSpeed nor pickle and lives here, so every command below training can load
a model.

What is checked before a checkpoint is used, each failure a :class:`CheckpointError` naming the file
(or tensor, or key) and what to do:

* ``checkpoint.json`` lists every file the checkpoint must hold with its size in bytes: a missing
  file, or a DeepSpeed shard or tokenizer file of another size than written (a copy cut short), is
  named. The weights, recipe and trainer state are checked by their content instead (below), so
  re-saved weights or an edited eval setting do not count as damage. Checkpoints written before the
  list existed have none and are checked file by file only.
* ``model.safetensors`` must be a complete safetensors file, and every tensor in it must have the
  shape the checkpoint's ``recipe.yaml`` builds (the first one that does not is named).
* ``trainer_state.json`` must be JSON holding what resume needs.
* A run's ``checkpoints/latest`` must name a checkpoint that is there; when it does not (any cause:
  a pruned step, a copy without it) commands say so instead of picking another step.

Nothing here unpickles: weights are safetensors, state is JSON. The DeepSpeed shards are read only by
``train --resume``, and only with ``torch.load(weights_only=True)`` (``moeaudio.train.checkpoint``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from moeaudio.config import Recipe, load_recipe
from moeaudio.errors import CheckpointError
from moeaudio.model.audio_llm import AudioLLM, build_audio_llm
from moeaudio.runtime.run_dir import RunDir, newest_checkpoint
from moeaudio.runtime.vocabulary import saved_tokenizer

__all__ = [
    "Checkpoint",
    "EXPORT_MANIFEST",
    "FILES_MANIFEST",
    "WEIGHTS",
    "describe_files",
    "latest_checkpoint",
    "load_model",
    "load_trainer_state",
    "is_rebuilt",
    "open_checkpoint",
    "resolve_checkpoint",
    "check_shapes",
    "verify_checkpoint",
]

WEIGHTS = "model.safetensors"
EXPORT_MANIFEST = "export.json"
#: Recipe fields that may name a path inside the checkpoint (``./...``).
LOCAL_PATH_FIELDS = (("encoder", "name"), ("llm", "name"), ("llm", "tokenizer"), ("llm", "lora_adapter"))


def resolve_local_paths(recipe: Recipe, checkpoint: Path) -> Recipe:
    """``./x`` in the path fields of a checkpoint's recipe -> ``CHECKPOINT/x`` (exports name their own
    files); a new recipe, the given one untouched."""
    sections: dict[str, dict[str, str]] = {}
    for section, key in LOCAL_PATH_FIELDS:
        value = getattr(getattr(recipe, section), key)
        if isinstance(value, str) and value.startswith("./"):
            sections.setdefault(section, {})[key] = str((checkpoint / value).resolve())
    update = {name: getattr(recipe, name).model_copy(update=keys) for name, keys in sections.items()}
    return recipe.model_copy(update=update) if update else recipe


FILES_MANIFEST = "checkpoint.json"
FORMAT_VERSION = 1
#: What a model load reads (eval, transcribe, analyze); a resume reads every file.
MODEL_FILES = ("recipe.yaml", WEIGHTS)
#: Files whose content is checked when read (a complete safetensors file whose tensors fit the recipe,
#: a valid recipe, JSON with the keys resume needs): their size may change (weights re-saved, an eval
#: setting edited) without the checkpoint being damaged, so only their presence is checked here.
SELF_CHECKED = frozenset({WEIGHTS, "recipe.yaml", "trainer_state.json"})
TRAINER_STATE_KEYS = ("step", "batches_consumed", "rng")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's checkpoint to continue from or evaluate: :meth:`RunDir.latest
    <moeaudio.runtime.run_dir.RunDir.latest>` (the ``latest`` pointer, checked)."""
    return RunDir(run_dir).latest()


def resolve_checkpoint(checkpoint: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """The given checkpoint directory (a run directory, or its ``checkpoints/`` folder, means its
    latest checkpoint), else the newest checkpoint under ``runs_dir``. Raises
    :class:`CheckpointError` naming what to pass instead."""
    if checkpoint is None:
        found = newest_checkpoint(runs_dir)
        if found is None:
            raise CheckpointError(
                f"no checkpoint found under {runs_dir}/: train one first (`moeaudio train quickstart`) "
                "or pass --checkpoint DIR"
            )
        return found
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a file; pass its directory (RUN/checkpoints/step-NNNNNN) or a run directory"
        )
    if not (path / WEIGHTS).exists():
        run = path.parent if path.name == "checkpoints" and not (path / "checkpoints").is_dir() else path
        if RunDir(run).checkpoints.is_dir():
            run_latest = RunDir(run).latest()
            if run_latest is not None:
                return run_latest
        raise CheckpointError(
            f"{path}: no {WEIGHTS}; pass a checkpoint directory (RUN/checkpoints/step-NNNNNN) or a run directory"
        )
    return path


def is_rebuilt(key: str, recipe: Recipe) -> bool:
    """Whether a training checkpoint leaves out the state-dict ``key``: a frozen weight rebuilt from
    its reference (hub id, path or offline weights) when the model is built.

    A ``tiny`` part is random, so it is always stored. An LLM under LoRA keeps its base weights frozen
    whatever ``llm.freeze`` says: only the LoRA weights are stored (a few MB, not SmolLM2's 514 MB).
    A part that any stage of ``train.stages`` trains is always stored.
    """
    trained = {part for stage in recipe.train.stages or [] for part in stage.trainable or []}
    if key.startswith("encoder."):
        return recipe.encoder.freeze and "encoder" not in trained and recipe.encoder.name != "tiny"
    if key.startswith("llm."):
        frozen = (recipe.llm.freeze or recipe.llm.lora_r > 0) and "llm" not in trained
        return frozen and recipe.llm.name != "tiny" and "lora_" not in key
    return False


# ----------------------------------------------------------------------------------------- checks


def describe_files(checkpoint: str | Path, step: int | None = None) -> dict[str, Any]:
    """What :data:`FILES_MANIFEST` holds: every file under ``checkpoint`` (relative path -> size)."""
    root = Path(checkpoint)
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != FILES_MANIFEST
    }
    return {"format": FORMAT_VERSION, "step": step, "files": files}


def _listed_files(checkpoint: Path) -> dict[str, int] | None:
    path = checkpoint / FILES_MANIFEST
    if not path.exists():
        return None  # written before the manifest existed
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
            raise TypeError("'files' must map paths to sizes")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is corrupt ({e}); the checkpoint cannot be checked. Restore it from the run's copy, or "
            f"delete {path.name} to load it unchecked"
        ) from None
    return files


def verify_checkpoint(checkpoint: str | Path, files: Iterable[str] | None = MODEL_FILES) -> Path:
    """Check that ``checkpoint`` holds ``files`` (default: what a model load needs; None: every file
    it was written with, as a resume needs), none missing or cut short, and that its weights file is
    a complete safetensors file. Returns the path; :class:`CheckpointError` names what is wrong."""
    ckpt = Path(checkpoint)
    listed = _listed_files(ckpt)
    wanted = set(files) if files is not None else set(listed or {})
    problems = []
    for name in sorted(wanted):
        path = ckpt / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        if listed is None or name not in listed or name in SELF_CHECKED:
            continue
        size, expected = path.stat().st_size, listed[name]
        if size < expected:
            problems.append(f"{name} is truncated ({size} of {expected} bytes)")
        elif size > expected:
            problems.append(f"{name} has {size} bytes, not the {expected} it was written with")
    if problems:
        raise CheckpointError(
            f"checkpoint {ckpt} is damaged: {'; '.join(dict.fromkeys(problems))}. Copy it again from where it "
            "was written, or use another checkpoint of the run"
        )
    if WEIGHTS in wanted:
        _check_safetensors(ckpt / WEIGHTS)
    return ckpt


def _check_safetensors(path: Path) -> None:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the weights were never written completely")
    try:
        with safe_open(str(path), framework="pt"):  # checks the header covers the whole file
            pass
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a complete safetensors file ({(str(e).splitlines() or [''])[0]}): truncated or "
            "corrupt. Copy "
            "the checkpoint again, or use another checkpoint of the run"
        ) from None


def check_shapes(path: Path, model: torch.nn.Module, recipe_file: Path | str) -> None:
    """Every tensor in ``path`` must have the shape ``model`` (built from ``recipe_file``, a path or a
    description of the recipe) has; the first that does not is a :class:`CheckpointError` naming it."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key not in expected:
                continue  # unexpected keys are reported by the load below
            shape = tuple(f.get_slice(key).get_shape())
            if shape != expected[key]:
                raise CheckpointError(
                    f"{path}: tensor '{key}' has shape {list(shape)} but {recipe_file} builds "
                    f"{list(expected[key])}: the weights do not belong to this recipe (was recipe.yaml edited, or "
                    "weights copied from another run?)"
                )


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose files passed :func:`verify_checkpoint`, with its recipe parsed (local paths
    resolved): what :func:`open_checkpoint` returns and :func:`load_model` takes, so a command that
    looks at the recipe before loading the model checks and parses the checkpoint once."""

    path: Path
    recipe: Recipe


def open_checkpoint(checkpoint: str | Path) -> Checkpoint:
    """Check a checkpoint directory (:func:`verify_checkpoint`) and parse its ``recipe.yaml``."""
    path = Path(checkpoint)
    if not (path / WEIGHTS).exists() and not (path / "recipe.yaml").exists():
        raise CheckpointError(f"{path}: no {WEIGHTS}; is this a moeaudio checkpoint directory?")
    verify_checkpoint(path)
    return Checkpoint(path, resolve_local_paths(load_recipe(path / "recipe.yaml"), path))


def load_trainer_state(checkpoint: Path, required: tuple[str, ...] = TRAINER_STATE_KEYS) -> dict[str, Any]:
    """``trainer_state.json`` of a checkpoint, checked to hold ``required`` (default: what resume
    needs; readers that only report the run ask for less, e.g. ``("step",)``)."""
    path = Path(checkpoint) / "trainer_state.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {checkpoint} is not a complete checkpoint")
    try:
        state = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is corrupt (not valid JSON: {e}); resume from another checkpoint of the run "
            "(--checkpoint, or write its name into checkpoints/latest)"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object, got {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path} is corrupt: key(s) {', '.join(map(repr, missing))} missing")
    if "step" in state and (not isinstance(state["step"], int) or state["step"] < 0):
        raise CheckpointError(f"{path}: key 'step' must be a non-negative integer (got {state['step']!r})")
    return state


def load_model(
    checkpoint: str | Path | Checkpoint, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> AudioLLM:
    """Rebuild the AudioLLM from a checkpoint directory, in eval mode, without DeepSpeed or pickle;
    on ``device``, its floating-point weights cast to ``dtype`` when given (bf16 inference on a GPU).

    A directory is checked first (:func:`open_checkpoint`); an already opened :class:`Checkpoint` is
    not checked again. Every tensor's shape is checked against the recipe. Frozen weights rebuilt from their reference (:func:`is_rebuilt`) are not in a training
    checkpoint's weights file; every other parameter must be. In an export every weight is in the
    export: the LLM's in its own folder (listed in ``export.json``), all others in the weights file.
    """
    opened = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(checkpoint)
    checkpoint, recipe = opened.path, opened.recipe
    export = checkpoint / EXPORT_MANIFEST
    elsewhere = tuple(json.loads(export.read_text()).get("weights_elsewhere", [])) if export.exists() else ()

    def stored_elsewhere(key: str) -> bool:
        return key.startswith(elsewhere) if export.exists() else is_rebuilt(key, recipe)

    model = build_audio_llm(
        recipe, tokenizer=saved_tokenizer(checkpoint) if recipe.llm.vocab == "corpus" else None
    )
    load_weights_into(
        model, checkpoint, stored_elsewhere, f"the weights do not belong to {checkpoint / 'recipe.yaml'}"
    )
    return (model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)).eval()


def load_weights_into(
    model: torch.nn.Module, checkpoint: Path, stored_elsewhere: Callable[[str], bool], mismatch: str
) -> None:
    """The checkpoint's weights file into ``model``, every shape checked first; a parameter the file
    lacks must be one ``stored_elsewhere`` names (rebuilt from its reference, or in an export's own
    folder), and the file may hold nothing the model lacks. ``mismatch`` says why, when they differ."""
    check_shapes(checkpoint / WEIGHTS, model, checkpoint / "recipe.yaml")
    missing, unexpected = model.load_state_dict(load_file(str(checkpoint / WEIGHTS)), strict=False)
    missing = [k for k in missing if not stored_elsewhere(k)]
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint / WEIGHTS}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}: {mismatch}"
        )


def finished_checkpoint(run_dir: str | Path, steps: int) -> Path | None:
    """The run's latest checkpoint if training got to ``steps`` (a stage's or a study run's end), else None."""
    ckpt = RunDir(run_dir).latest()
    if ckpt is None or load_trainer_state(ckpt, ("step",))["step"] < steps:
        return None
    return ckpt
