"""Audio encoders behind one interface: waveform -> features -> hidden states at a fixed frame rate.

Whisper is the default. Its transformers implementation insists on 30 s of mel frames (3000);
encoding a 2 s clip that way costs 15x the compute. We run the encoder's own modules on the
clip's real length instead and slice the positional table, with a key-padding mask so a padded
batch gives the same states as encoding each clip alone (up to float rounding).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moeaudio.config import EncoderConfig, RecipeError
from moeaudio.model.loading import loading
from moeaudio.model.pitch import PitchAugmentedEncoder, SemitoneSpectrogram
from moeaudio.model.whisper_offline import OFFLINE_WHISPER_ID, offline_whisper_dir

TINY_WHISPER = dict(
    d_model=64,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_ffn_dim=128,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=128,
    num_mel_bins=80,
    vocab_size=64,
    max_source_positions=1500,
    max_target_positions=64,
)


@dataclass
class EncoderInputs:
    """A padded batch ready for the encoder, plus each item's valid output length."""

    values: torch.Tensor  # whisper: (batch, mel_bins, frames); waveform encoders: (batch, samples)
    lengths: torch.Tensor  # (batch,) valid encoder frames per item
    sample_lengths: torch.Tensor | None = None  # (batch,) valid input samples (waveform encoders)
    extra: torch.Tensor | None = None  # (batch, frames, bins) frame-aligned side features (pitch stream)


class AudioEncoder(nn.Module):
    """Common interface: ``prepare`` (numpy, CPU) then ``forward`` (torch)."""

    sample_rate: int = 16000
    d_model: int
    frame_rate: float
    identity: str  # what the feature cache keys on

    def prepare(self, waves: list[np.ndarray]) -> EncoderInputs:
        raise NotImplementedError

    def output_length(self, num_samples: int) -> int:
        raise NotImplementedError

    def forward(self, inputs: EncoderInputs) -> torch.Tensor:  # (batch, frames, d_model)
        raise NotImplementedError


class WhisperAudioEncoder(AudioEncoder):
    """The encoder half of any transformers Whisper checkpoint, run at the clip's own length."""

    def __init__(self, whisper_encoder: nn.Module, feature_extractor, identity: str, output_layer: int = -1):
        super().__init__()
        layers = len(whisper_encoder.layers)
        if not -1 <= output_layer < layers:
            raise RecipeError(
                f"encoder.output_layer={output_layer}: this encoder has layers 0..{layers - 1} (or -1)"
            )
        self.output_layer = output_layer
        self.encoder = whisper_encoder
        self.feature_extractor = feature_extractor
        self.d_model = whisper_encoder.config.d_model
        self.frame_rate = 50.0
        self.max_frames = whisper_encoder.config.max_source_positions
        self.identity = identity

    def output_length(self, num_samples: int) -> int:
        mel_frames = num_samples // self.feature_extractor.hop_length
        return min(mel_frames // 2, self.max_frames)

    def prepare(self, waves: list[np.ndarray]) -> EncoderInputs:
        mels = []
        for wave in waves:
            out_len = self.output_length(len(wave))
            if out_len < 1:
                raise ValueError(
                    f"clip of {len(wave)} samples is too short for the Whisper encoder (need >= 320)"
                )
            feats = self.feature_extractor(
                wave, sampling_rate=self.sample_rate, return_tensors="np", padding=False, truncation=False
            ).input_features[0]  # (mel_bins, frames)
            mels.append(torch.from_numpy(feats[:, : 2 * out_len]))  # even length: conv2 stride edges match
        lengths = torch.tensor([m.shape[1] // 2 for m in mels])
        values = torch.zeros(len(mels), mels[0].shape[0], 2 * int(lengths.max()))
        for i, mel in enumerate(mels):
            values[i, :, : mel.shape[1]] = mel
        return EncoderInputs(values, lengths)

    def forward(self, inputs: EncoderInputs) -> torch.Tensor:
        enc = self.encoder
        x = inputs.values.to(enc.conv1.weight.dtype)  # (batch, mel_bins, 2*frames)
        x = nn.functional.gelu(enc.conv1(x))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)  # (batch, frames, d_model)
        frames = x.shape[1]
        x = x + enc.embed_positions.weight[:frames]  # the sliced positional table
        x = nn.functional.dropout(x, p=enc.dropout, training=enc.training)  # as WhisperEncoder.forward
        mask = _key_padding_mask(inputs.lengths.to(x.device), frames, x.dtype)
        if self.output_layer == -1:
            for layer in enc.layers:
                x = layer(x, mask)
            return enc.layer_norm(x)  # (batch, frames, d_model)
        for layer in enc.layers[: self.output_layer + 1]:  # layers above it are never run
            x = layer(x, mask)
        return x  # (batch, frames, d_model)


class HFWaveformEncoder(AudioEncoder):
    """WavLM / HuBERT / wav2vec2: raw waveform in, last hidden state out (50 Hz)."""

    def __init__(self, model: nn.Module, feature_extractor, identity: str, output_layer: int = -1):
        super().__init__()
        self.output_layer = output_layer
        self.model = model
        self.feature_extractor = feature_extractor
        self.d_model = model.config.hidden_size
        self.frame_rate = 50.0
        self.identity = identity

    def output_length(self, num_samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def prepare(self, waves: list[np.ndarray]) -> EncoderInputs:
        batch = self.feature_extractor(
            waves,
            sampling_rate=self.sample_rate,
            return_tensors="pt",
            padding=True,
            return_attention_mask=True,
        )
        lengths = torch.tensor([self.output_length(len(w)) for w in waves])
        return EncoderInputs(batch.input_values, lengths, torch.tensor([len(w) for w in waves]))

    def forward(self, inputs: EncoderInputs) -> torch.Tensor:
        samples = inputs.values.to(next(self.model.parameters()).dtype)  # (batch, samples)
        mask = torch.arange(samples.shape[1])[None] < inputs.sample_lengths[:, None]
        out = self.model(
            samples,
            attention_mask=mask.long().to(samples.device),
            output_hidden_states=self.output_layer != -1,
        )
        return out.last_hidden_state if self.output_layer == -1 else out.hidden_states[self.output_layer + 1]


def min_input_seconds(cfg: EncoderConfig) -> float:
    """The shortest clip (seconds at 16 kHz) the encoder turns into one frame, i.e. one audio token.

    Whisper: 320 samples (two 10 ms mel hops per encoder frame); WavLM / HuBERT / wav2vec2: 400
    samples (the receptive field of their first convolution). Commands refuse shorter clips up front,
    naming them, instead of failing inside the encoder.
    """
    return (320 if cfg.family == "whisper" else 400) / 16000


def _key_padding_mask(lengths: torch.Tensor, frames: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (batch, 1, frames, frames): padded keys get -inf-like values."""
    valid = torch.arange(frames, device=lengths.device)[None] < lengths[:, None]  # (batch, frames)
    mask = torch.zeros(len(lengths), 1, 1, frames, dtype=dtype, device=lengths.device)
    mask.masked_fill_(~valid[:, None, None, :], torch.finfo(dtype).min)
    return mask.expand(-1, 1, frames, frames)


def _identity(name: str, extra: str = "") -> str:
    return hashlib.sha256(f"{name}|{extra}".encode()).hexdigest()[:16]


def whisper_source(cfg: EncoderConfig) -> str:
    """Where a Whisper encoder's files are: the converted offline weights for ``whisper-tiny.en-offline``
    (converted once, then cached), else ``encoder.name`` itself (a hub id or a local path)."""
    return str(offline_whisper_dir()) if cfg.name == OFFLINE_WHISPER_ID else cfg.name


def tiny_whisper_config(cfg: EncoderConfig):
    """The random tiny Whisper's config: :data:`TINY_WHISPER` with the recipe's ``encoder.tiny`` on top."""
    from transformers import WhisperConfig

    return WhisperConfig(**{**TINY_WHISPER, **cfg.tiny}, pad_token_id=0, bos_token_id=0, eos_token_id=0)


def encoder_config(cfg: EncoderConfig):
    """The transformers config :func:`build_encoder` builds the encoder from, read without weights and
    never downloaded (``local_files_only``); None for a tiny encoder of another family. A missing
    local copy raises ``OSError`` as transformers does."""
    from transformers import AutoConfig

    if cfg.name == "tiny":
        return tiny_whisper_config(cfg) if cfg.family == "whisper" else None
    return AutoConfig.from_pretrained(
        whisper_source(cfg) if cfg.family == "whisper" else cfg.name, local_files_only=True
    )


def build_encoder(cfg: EncoderConfig, seed: int = 0) -> AudioEncoder:
    """Load the configured encoder (plus the semitone stream when ``cfg.pitch_features``)."""
    encoder = _build_base_encoder(cfg, seed)
    if not cfg.pitch_features:
        return encoder
    semitones = SemitoneSpectrogram(encoder.sample_rate, encoder.frame_rate)
    return PitchAugmentedEncoder(encoder, semitones)  # type: ignore[return-value]


def _build_base_encoder(cfg: EncoderConfig, seed: int = 0) -> AudioEncoder:
    """Load the configured encoder. Offline names never touch the network."""
    from transformers import AutoFeatureExtractor, WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if cfg.family == "whisper":
        if cfg.name == "tiny":
            torch.manual_seed(seed)
            config = tiny_whisper_config(cfg)
            encoder = WhisperEncoder(config)
            fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
            identity = _identity("tiny", f"{sorted(cfg.tiny.items())}|{seed}|{cfg.output_layer}")
            return WhisperAudioEncoder(encoder, fe, identity, cfg.output_layer)
        with loading("encoder.name", cfg.name, ("tiny", OFFLINE_WHISPER_ID)):
            source = whisper_source(cfg)
            if config_only(source):  # an export's ./encoder: weights follow from the checkpoint
                encoder = WhisperEncoder(WhisperConfig.from_pretrained(source))
            else:
                encoder = (
                    _whisper_model_class().from_pretrained(source).get_encoder()
                )  # the decoder is dropped
            fe = WhisperFeatureExtractor.from_pretrained(source)
        identity = _identity(cfg.name, _weights_stamp(source) + _layer_tag(cfg.output_layer))
        return WhisperAudioEncoder(encoder, fe, identity, cfg.output_layer)

    from transformers import AutoConfig, AutoModel

    if cfg.name == "tiny":
        torch.manual_seed(seed)
        config = AutoConfig.for_model(
            cfg.family,
            **{
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 128,
                "conv_dim": (32, 32, 32, 32, 32, 32, 32),
                **cfg.tiny,
            },
        )
        model = AutoModel.from_config(config)
        from transformers import Wav2Vec2FeatureExtractor

        fe = Wav2Vec2FeatureExtractor(return_attention_mask=True)
        return HFWaveformEncoder(
            model,
            fe,
            _identity(f"tiny-{cfg.family}", f"{sorted(cfg.tiny.items())}|{seed}|{cfg.output_layer}"),
            cfg.output_layer,
        )
    with loading("encoder.name", cfg.name):
        if config_only(cfg.name):
            model = AutoModel.from_config(AutoConfig.from_pretrained(cfg.name))
        else:
            model = AutoModel.from_pretrained(cfg.name)
        fe = AutoFeatureExtractor.from_pretrained(cfg.name)
    identity = _identity(cfg.name, _weights_stamp(cfg.name) + _layer_tag(cfg.output_layer))
    return HFWaveformEncoder(model, fe, identity, cfg.output_layer)


@functools.cache
def _whisper_model_class() -> type:
    """``WhisperModel`` that does not report a generation head (``proj_out``) as an unexpected key.

    Whisper checkpoints are saved as ``WhisperForConditionalGeneration`` (the offline conversion too);
    loading the bare ``WhisperModel`` from them leaves that head out, as intended, and transformers
    printed a LOAD REPORT table saying so on every command. Missing keys are still reported.
    """
    from transformers import WhisperModel

    class WhisperModelWithoutHead(WhisperModel):
        _keys_to_ignore_on_load_unexpected = [r"proj_out\.weight"]

    return WhisperModelWithoutHead


def _layer_tag(output_layer: int) -> str:
    """Empty for the default (so caches made before the option existed stay valid)."""
    return "" if output_layer == -1 else f"|layer{output_layer}"


#: Written by `moeaudio export` beside a config-only encoder folder: the sha256 of the encoder's weights
#: (kept in the export's model.safetensors), so cached features follow the weights, not the folder name.
ENCODER_STAMP = "moeaudio_encoder.json"


def config_only(source: str) -> bool:
    """A local folder with a model config but no weight files (an export's ``encoder/``)."""
    path = Path(source)
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin")) if path.is_dir() else []
    return path.is_dir() and (path / "config.json").is_file() and not weights


def _weights_stamp(source: str) -> str:
    """Changes when a local checkpoint's weights change, so cached features are invalidated."""
    path = Path(source)
    if not path.is_dir():
        return source
    if (path / ENCODER_STAMP).is_file():
        return (path / ENCODER_STAMP).read_text()
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    return "|".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


class FrameStacker(nn.Module):
    """Concatenate k consecutive frames into one audio token (50 Hz x 4 -> 12.5 Hz, 80 ms).

    Optionally projects the stacked vector (paper front end: LN -> Linear -> SiLU -> LN).
    """

    def __init__(self, d_model: int, stack: int, projection_dim: int | None = None):
        super().__init__()
        self.stack = stack
        d_stacked = d_model * stack
        self.projection = (
            nn.Sequential(
                nn.LayerNorm(d_stacked),
                nn.Linear(d_stacked, projection_dim),
                nn.SiLU(),
                nn.LayerNorm(projection_dim),
            )
            if projection_dim
            else None
        )
        self.out_dim = projection_dim or d_stacked

    def token_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(frame_lengths + self.stack - 1, self.stack, rounding_mode="floor")

    def forward(self, hidden: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, d_model = hidden.shape  # (batch, frames, d_model)
        pad = (-frames) % self.stack
        valid = torch.arange(frames, device=hidden.device)[None] < frame_lengths[:, None].to(hidden.device)
        hidden = hidden * valid[..., None]  # zero the padding so a partial last token is clean
        if pad:
            hidden = nn.functional.pad(hidden, (0, 0, 0, pad))
        tokens = hidden.reshape(batch, (frames + pad) // self.stack, self.stack * d_model)
        if self.projection is not None:
            tokens = self.projection(tokens)
        return tokens, self.token_lengths(frame_lengths)  # (batch, tokens, out_dim), (batch,)
