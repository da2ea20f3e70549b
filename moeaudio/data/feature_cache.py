"""Frozen-encoder outputs computed once and kept on disk.

With a frozen encoder, every epoch and every evaluation would recompute the same states; on a
CPU that is most of the work. Entries are keyed by the audio file's bytes and the encoder's
identity (name + weights stamp, output layer, pitch stream, tiny config and seed), so editing a file
or changing the encoder invalidates exactly the entries concerned.

Everything else that changes the states is part of the key too (:func:`cache_options`): how NaN/Inf
samples are treated (``data.nonfinite_audio``: ``repair`` silences them, ``error`` refuses the clip),
the sample rate clips are resampled to, the feature extractor's settings (mel bins, window,
hop) and the precision the encoder runs in. The default options keep the folder ``<identity>`` (so existing caches stay valid); any other
option set gets its own folder ``<identity>-<hash>``, and each folder records its options in
``options.json``. So states of repaired audio never feed a later run without ``--repair-audio``
(which must refuse the clip instead), and a changed front end never reads the old one's states.

Entries live in safetensors shards (``<identity>/shards/shard-<writer>-<id>.safetensors``, one
tensor per clip named by its key, ``data.cache_shard_mb`` each): a million clips are a few thousand
files, not a million, and reading one entry memory-maps its shard and copies only that tensor.
Each shard is written atomically when full (and at the end), so an interrupted fill keeps every
finished shard; writers never share a file, so several processes or ranks can fill one cache at
once. The index (key -> shard) is read from the shards' headers: 16 bytes of key and 4 of shard
number per entry. Caches written before shards (one ``<key[:2]>/<key>.npy`` per clip) are still
read; new entries go to shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from moeaudio.data.audio import AudioDecodeError, NonFinite, audio_info, load_audio
from moeaudio.errors import DiskFullError
from moeaudio.io_utils import atomic_path
from moeaudio.progress import progress_bar

#: The options whose values keep the plain ``<identity>`` folder (what every cache before them used).
DEFAULT_OPTIONS: dict[str, Any] = {"nonfinite_audio": "error", "sample_rate": 16000, "dtype": "float32"}
OPTIONS_FILE = "options.json"


STATE_BYTES = 4  # the cache stores float32 states
# Room left beside the estimate: shard headers and the file system's own blocks, plus what the run
# writes next (checkpoints, logs) in the same folder.
ROOM_MARGIN = 1.05


def state_bytes_per_second(width: int, frame_rate: float) -> float:
    """Bytes the cache takes per second of audio: ``width`` float32 values per frame at ``frame_rate``
    frames per second (Whisper-large-v3: 1280 x 50 x 4 = 256,000 B/s, about 0.92 GB per hour)."""
    return width * frame_rate * STATE_BYTES


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (what ``disk_usage`` can ask about)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover - the loop returns


def check_cache_room(
    folder: str | Path, seconds: float, width: int, frame_rate: float, free_bytes: int | None = None
) -> int:
    """The bytes caching ``seconds`` of audio needs (:func:`state_bytes_per_second`); raises
    :class:`~moeaudio.errors.DiskFullError` before anything is encoded when the disk under ``folder``
    has less free space (``free_bytes`` overrides the measured space, for tests)."""
    need = int(seconds * state_bytes_per_second(width, frame_rate))
    free = shutil.disk_usage(_existing(Path(folder))).free if free_bytes is None else free_bytes
    if need * ROOM_MARGIN > free:
        raise DiskFullError(
            f"data.feature_cache: caching the encoder states of {seconds / 3600:,.1f} h of audio needs about "
            f"{_size(need)} ({width}-d x {frame_rate:g} Hz x {STATE_BYTES} bytes = "
            f"{_size(state_bytes_per_second(width, frame_rate))} per second of audio) in {folder}, which has "
            f"{_size(free)} free; set data.feature_cache: null (the frozen encoder then runs in every step, "
            "as the paper recipes do), point data.feature_cache at a disk with room, or free space there"
        )
    return need


def frontend_fingerprint(encoder: Any) -> str | None:
    """A hash of the encoder's feature-extractor settings (mel bins, window, hop, chunk, dither, ...),
    or None for an encoder without one. Arrays derived from the settings (mel filters) are left out."""
    base = getattr(encoder, "base", None)  # the pitch-augmented encoder wraps the one with the extractor
    fe = getattr(encoder, "feature_extractor", None) or getattr(base, "feature_extractor", None)
    if fe is None or not hasattr(fe, "to_dict"):
        return None
    settings = {k: v for k, v in fe.to_dict().items() if isinstance(v, str | int | float | bool | type(None))}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def cache_options(encoder: Any, nonfinite: NonFinite = "error") -> dict[str, Any]:
    """What, beside the encoder's identity, changes the cached states: the treatment of NaN/Inf
    samples, the sample rate clips are resampled to, the feature extractor's settings and the precision
    the encoder runs in (an evaluation in bf16 on a GPU must not feed a float32 run its states)."""
    weight = next(iter(encoder.parameters()), None) if hasattr(encoder, "parameters") else None
    return {
        "nonfinite_audio": nonfinite,
        "sample_rate": int(getattr(encoder, "sample_rate", 16000)),
        "frontend": frontend_fingerprint(encoder),
        "dtype": "float32" if weight is None else str(weight.dtype).removeprefix("torch."),
    }


def _same_options(recorded: dict[str, Any], options: dict[str, Any]) -> bool:
    """Recorded options equal ``options``; an unknown (None) front end on either side matches any."""
    for key in recorded.keys() | options.keys():
        # a key recorded before it was part of the options had its default value
        a, b = recorded.get(key, DEFAULT_OPTIONS.get(key)), options.get(key, DEFAULT_OPTIONS.get(key))
        if a != b and not (key == "frontend" and (a is None or b is None)):
            return False
    return True


def cache_folder(cache_dir: str | Path, encoder_identity: str, options: dict[str, Any] | None = None) -> Path:
    """The folder holding the states of ``encoder_identity`` under ``options`` (:func:`cache_options`).

    Default options (:data:`DEFAULT_OPTIONS`) use ``<identity>`` unless that folder records other
    options (e.g. another front end under the same identity); every other set of options uses
    ``<identity>-<hash of the options>``."""
    options = {**DEFAULT_OPTIONS, **(options or {})}
    base = Path(cache_dir) / encoder_identity
    if all(options[k] == v for k, v in DEFAULT_OPTIONS.items()):
        recorded = _read_options(base)
        if recorded is None or _same_options(recorded, options):
            return base
    spec = json.dumps({k: options[k] for k in sorted(options)}, sort_keys=True)
    return base.with_name(f"{encoder_identity}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}")


def _read_options(folder: Path) -> dict[str, Any] | None:
    """The options a cache folder records (None: a fresh folder, or one written before they were)."""
    try:
        return json.loads((folder / OPTIONS_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def audio_key(path: Path) -> str:
    """Content hash of an audio file (not its name: copies share an entry, edits do not)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


class ShardWriter:
    """Entries gathered in memory up to ``max_bytes``, then written as one shard (atomically)."""

    def __init__(self, shard_dir: Path, writer: str = "w0", max_bytes: int = 256 << 20):
        self.dir = shard_dir
        self.writer = writer
        self.max_bytes = max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.written: list[Path] = []

    def add(self, key: str, states: torch.Tensor) -> None:
        self.pending[key] = states.detach().cpu().float().contiguous()
        self.bytes += self.pending[key].numel() * 4
        if self.bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> Path | None:
        if not self.pending:
            return None
        path = self.dir / f"shard-{self.writer}-{uuid.uuid4().hex[:12]}.safetensors"
        with atomic_path(path) as tmp:
            save_file(self.pending, str(tmp))
        self.pending, self.bytes = {}, 0
        self.written.append(path)
        return path


class FeatureCache:
    """``cache_dir/<encoder identity>[-<options hash>]/shards/*.safetensors`` holding (frames, d_model)
    float32 per clip (and, read only, the older ``<key[:2]>/<key>.npy`` files).

    ``options`` (:func:`cache_options`) are those the states are computed under; :meth:`for_encoder`
    takes them from the encoder and the NaN/Inf treatment, which is how every command opens a cache."""

    def __init__(
        self,
        cache_dir: str | Path,
        encoder_identity: str,
        shard_mb: int = 256,
        options: dict[str, Any] | None = None,
    ):
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self.nonfinite: NonFinite = self.options["nonfinite_audio"]
        self.root = cache_folder(cache_dir, encoder_identity, self.options)
        self.shard_dir = self.root / "shards"
        self.shard_bytes = shard_mb << 20
        self.hits = 0
        self.misses = 0
        self._keys = np.zeros(0, dtype="S16")  # sorted binary keys
        self._shard_of = np.zeros(0, dtype=np.int32)
        self._shards: list[Path] = []
        self._open: dict[int, Any] = {}  # shard number -> safe_open handle (memory-mapped)
        self.refresh()

    @classmethod
    def for_encoder(
        cls, cache_dir: str | Path, encoder: Any, nonfinite: NonFinite = "error", shard_mb: int = 256
    ) -> FeatureCache:
        """The cache of ``encoder``'s states computed with NaN/Inf samples treated per ``nonfinite``."""
        return cls(cache_dir, encoder.identity, shard_mb, cache_options(encoder, nonfinite))

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the shards themselves
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def refresh(self) -> None:
        """Re-read the index from the shards' headers (after other writers added shards)."""
        shards = sorted(self.shard_dir.glob("shard-*.safetensors")) if self.shard_dir.is_dir() else []
        if shards == self._shards:
            return
        keys, owner = [], []
        for n, path in enumerate(shards):
            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
            keys.extend(bytes.fromhex(k) for k in names)
            owner.extend([n] * len(names))
        order = np.argsort(np.asarray(keys, dtype="S16"), kind="stable") if keys else np.zeros(0, int)
        self._keys = np.asarray(keys, dtype="S16")[order] if keys else np.zeros(0, dtype="S16")
        self._shard_of = np.asarray(owner, dtype=np.int32)[order]
        self._shards = shards
        self._open = {}

    def __len__(self) -> int:
        return len(self._keys)

    def path_for(self, key: str) -> Path:
        """Where a pre-shard cache kept the entry (read only)."""
        return self.root / key[:2] / f"{key}.npy"

    def _shard(self, key: str) -> int | None:
        k = np.asarray([bytes.fromhex(key)], dtype="S16")
        i = int(np.searchsorted(self._keys, k[0]))
        return int(self._shard_of[i]) if i < len(self._keys) and self._keys[i] == k[0] else None

    def __contains__(self, key: str) -> bool:
        return self._shard(key) is not None or self.path_for(key).exists()

    def get(self, key: str) -> torch.Tensor | None:
        n = self._shard(key)
        if n is not None:
            return self._handle(n).get_tensor(key)
        path = self.path_for(key)
        if not path.exists():
            return None
        return torch.from_numpy(np.load(path))

    def writer(self, name: str = "w0") -> ShardWriter:
        """A writer of new shards; ``name`` tells writers apart (a process, a rank). The folder's
        options are recorded first (once), so a later run under other options keeps apart."""
        if _read_options(self.root) is None:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.root / OPTIONS_FILE) as tmp:
                tmp.write_text(json.dumps(self.options, indent=1, sort_keys=True) + "\n")
        return ShardWriter(self.shard_dir, f"{name}-{os.getpid()}", self.shard_bytes)

    def put(self, key: str, states: torch.Tensor) -> None:
        """One entry as a shard of its own (:meth:`writer` batches many into one shard)."""
        w = self.writer()
        w.add(key, states)
        w.flush()
        self.refresh()

    def _handle(self, n: int) -> Any:
        if n not in self._open:
            self._open[n] = safe_open(str(self._shards[n]), framework="pt")
        return self._open[n]

    def num_frames(self, key: str) -> int | None:
        """An entry's frame count from the shard header (no states read), or None when absent."""
        n = self._shard(key)
        if n is not None:
            return int(self._handle(n).get_slice(key).get_shape()[0])
        path = self.path_for(key)
        return int(np.load(path, mmap_mode="r").shape[0]) if path.exists() else None

    def ensure(
        self,
        encoder,
        audio_paths: Sequence[Path],
        batch_size: int = 16,
        progress: bool = True,
        nonfinite: NonFinite | None = None,
        durations: Sequence[float | None] | None = None,
    ) -> list[str]:
        """Every path's cache key, encoding (in batches) and writing only the missing ones; nothing
        but the shard being written is held in memory.

        ``nonfinite`` is :func:`~moeaudio.data.audio.load_audio`'s: NaN/Inf samples are an error,
        or (``"repair"``) replaced by silence. It is part of the cache's key, so it must be the
        cache's own (None: the cache's). ``durations`` (seconds, per path; a checked
        manifest's items carry them) order the encoding; a missing one is read from the header."""

        def seconds(i: int) -> float:
            known = None if durations is None else durations[i]
            return _seconds(audio_paths[i]) if known is None else known

        nonfinite = self.check_nonfinite(nonfinite)
        keys = [audio_key(p) for p in audio_paths]
        # shortest first, so a batch pads its clips to about their own length (less encoder work)
        todo = sorted((i for i, k in enumerate(keys) if k not in self), key=seconds)
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            self.check_room(encoder, sum(seconds(i) for i in todo))
            writer = self.writer()
            try:
                with progress_bar("encoding audio", len(todo), progress) as advance:
                    for start in range(0, len(todo), batch_size):
                        idx = todo[start : start + batch_size]
                        states = encode(encoder, [audio_paths[i] for i in idx], nonfinite)
                        for i, st in zip(idx, states, strict=True):
                            writer.add(keys[i], st)
                        advance(len(idx))
            finally:  # interrupted (ctrl-c, an error): what was encoded is kept for the next run
                writer.flush()
                self.refresh()
        return keys

    def check_room(self, encoder: Any, seconds: float) -> int:
        """:func:`check_cache_room` for ``seconds`` of ``encoder``'s states in this cache's folder
        (its width and frame rate as the encoder declares them)."""
        return check_cache_room(self.root, seconds, int(encoder.d_model), float(encoder.frame_rate))

    def check_nonfinite(self, nonfinite: NonFinite | None) -> NonFinite:
        """``nonfinite`` if it is the one this cache's states were computed with (None: that one)."""
        if nonfinite is not None and nonfinite != self.nonfinite:
            raise ValueError(
                f"states encoded with nonfinite={nonfinite!r} into the cache {self.root} of "
                f"nonfinite={self.nonfinite!r}: open it with FeatureCache.for_encoder(..., nonfinite)"
            )
        return self.nonfinite

    def fill(self, encoder, audio_paths: Sequence[Path], **ensure_options: Any) -> list[torch.Tensor]:
        """States for every path (in input order), computing only the missing ones: :meth:`ensure`
        (same options), then every entry read back."""
        keys = self.ensure(encoder, audio_paths, **ensure_options)
        return [self.get(k) for k in keys]  # type: ignore[misc]


def _seconds(path: Path) -> float:
    """The clip's duration from its header (0 when unreadable: the encoding then names the file)."""
    try:
        return audio_info(path).duration
    except AudioDecodeError:
        return 0.0


def encode(encoder, paths: Sequence[Path], nonfinite: NonFinite = "error") -> list[torch.Tensor]:
    """The encoder's states of each clip, unpadded: (frames, d_model) each."""
    waves = [load_audio(p, encoder.sample_rate, nonfinite=nonfinite) for p in paths]
    inputs = encoder.prepare(waves)
    with torch.no_grad():
        states = encoder(inputs)  # (batch, frames, d_model)
    return [states[j, : int(inputs.lengths[j])].clone() for j in range(len(paths))]
