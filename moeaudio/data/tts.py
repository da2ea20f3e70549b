"""Offline speech synthesis through eSpeak NG, driven directly with ctypes.

Why this exists: tests and tiny recipes need real (if robotic) English speech without network access,
without system packages (``apt install espeak-ng``) and without spawning an ``espeak`` binary. The PyPI
package ``espeakng-loader`` ships ``libespeak-ng.so`` together with its ``espeak-ng-data`` directory, so we
load that library with :mod:`ctypes` and use the synchronous retrieval API: eSpeak hands us 16-bit PCM
chunks through a callback, and we never touch an audio device.

Design notes:

* Deterministic: the same text and voice give the same bytes on every call in every process. eSpeak NG
  keeps synthesis state in C statics that no API resets (pitch flutter phase, roughness cycle counter,
  gain control), so each utterance runs in a freshly ``dlopen``-ed private copy of the library that is
  unloaded afterwards (~10 ms overhead); both PRNGs it uses are seeded.
* Thread-safe: the library has process-global state (one voice, one callback), so every call holds a
  module lock. The private library copy is made once, lazily, per process.
* Leading/trailing silence is trimmed lightly (10 ms of margin are kept) so durations track the text
  rather than eSpeak's end-of-clause pauses.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Voice", "synthesize", "list_variants", "NATIVE_SAMPLE_RATE"]

NATIVE_SAMPLE_RATE = 22050
"""Sample rate eSpeak NG synthesises at; ``synthesize`` returns the rate the library actually reports."""

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_WORDGAP = 7
_EE_OK = 0
_RAND_SEED = 0

# Trimming: samples whose magnitude is below this fraction of full scale count as silence.
_SILENCE_THRESHOLD = 1e-3
_TRIM_MARGIN_S = 0.01

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Voice:
    """An eSpeak voice: language voice name plus an optional variant (``"en-us+f2"``).

    ``gender`` is always derived from the variant (its ``gender`` line in ``espeak-ng-data/voices/!v``;
    plain language voices are male): a value passed in is overwritten, so downstream metadata never
    claims a gender the audio does not have.
    """

    name: str = "en-us"
    variant: str | None = None
    rate: int = 175
    pitch: int = 50
    word_gap: int = 0  # extra pause between words, in units of 10 ms (eSpeak's espeakWORDGAP)
    gender: str = "male"

    def __post_init__(self) -> None:
        object.__setattr__(self, "gender", _variant_gender(self.variant))

    @property
    def espeak_name(self) -> str:
        """The name passed to ``espeak_SetVoiceByName`` (``"en-us+f2"``)."""
        return self.name if not self.variant else f"{self.name}+{self.variant}"


class _Session:
    """One utterance's worth of eSpeak: a freshly loaded library, initialised, used once, unloaded.

    Why reload per utterance: eSpeak NG keeps synthesis state in C statics that no API resets (the pitch
    flutter index, the roughness cycle counter, the automatic gain control), so the second rendering of a
    sentence differs from the first by a few samples. Loading a private copy of the library gives pristine
    statics every time (about 10 ms), which makes the output depend only on ``(text, voice)``.
    """

    def __init__(self, library: Path) -> None:
        self.chunks: list[np.ndarray] = []
        # Keep a reference: ctypes callbacks are freed when the Python object dies.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self.lib = ctypes.CDLL(str(library))
        _declare_signatures(self.lib)

    def _on_samples(self, wav: ctypes.POINTER(ctypes.c_short), numsamples: int, events: int) -> int:
        """Synth callback: copy the chunk out of eSpeak's buffer (it is reused). Return 0 = continue."""
        if wav and numsamples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def render(self, text: str, voice: Voice, data_path: str) -> tuple[np.ndarray, int]:
        """Synthesise ``text`` with ``voice`` into int16 samples; returns them with eSpeak's sample rate."""
        lib = self.lib
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}) with data path {data_path!r}")
        try:
            lib.espeak_SetSynthCallback(self._callback)
            _check(lib.espeak_SetVoiceByName(voice.espeak_name.encode()), f"set voice {voice.espeak_name!r}")
            _check(lib.espeak_SetParameter(_ESPEAK_RATE, int(voice.rate), 0), "set rate")
            _check(lib.espeak_SetParameter(_ESPEAK_PITCH, int(voice.pitch), 0), "set pitch")
            _check(lib.espeak_SetParameter(_ESPEAK_WORDGAP, int(voice.word_gap), 0), "set word gap")
            # Breath noise uses libc rand(); eSpeak's own PRNG has a seed setter too. Seed both.
            lib.espeak_ng_SetRandSeed(_RAND_SEED)
            _libc().srand(_RAND_SEED)
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            flags = _ESPEAK_CHARS_UTF8
            _check(lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, flags, None, None), "synth")
        finally:
            lib.espeak_Terminate()
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        return pcm, int(rate)

    def close(self) -> None:
        """Unload the library so the next session starts from fresh statics."""
        handle = self.lib._handle
        del self.lib
        _ctypes.dlclose(handle)


def _declare_signatures(lib: ctypes.CDLL) -> None:
    """Give ctypes the C prototypes from speak_lib.h / espeak_ng.h (avoids int truncation of pointers)."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int


def _check(status: int, what: str) -> None:
    if status != _EE_OK:
        raise RuntimeError(f"eSpeak NG {what} failed with status {status}")


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    libc.srand.argtypes = [ctypes.c_uint]
    libc.srand.restype = None
    return libc


_LOCK = threading.Lock()


def _private_library() -> Path:
    """A private copy of the shipped ``libespeak-ng.so``, made once per user and library version.

    The dynamic loader de-duplicates libraries by file identity, so if anything else in the process
    (another TTS wrapper, a phonemizer) has loaded espeakng_loader's library, ``dlclose`` would not unload
    it and we would share, and clobber, its state. A copy under another name isolates us. It lives at a
    fixed path (not a per-process temporary folder, which every killed corpus worker left behind),
    written under a temporary name and renamed, so concurrent processes never load a partial file.
    """
    import espeakng_loader

    source = Path(espeakng_loader.get_library_path())
    stat = source.stat()
    uid = getattr(os, "getuid", lambda: 0)()
    target = (
        Path(tempfile.gettempdir())
        / f"moeaudio-espeak-{uid}"
        / f"libespeak-ng-{stat.st_size}-{stat.st_mtime_ns}.so"
    )
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)
    return target


def _render(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Run one isolated eSpeak session under the module lock."""
    import espeakng_loader

    with _LOCK:
        session = _Session(_private_library())
        try:
            return session.render(text, voice, espeakng_loader.get_data_path())
        finally:
            session.close()


def _variants_dir() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path()) / "voices" / "!v"


def list_variants() -> list[str]:
    """Names of the voice variants shipped in ``espeak-ng-data/voices/!v`` (``"f2"``, ``"m3"``, ...)."""
    return sorted(p.name for p in _variants_dir().iterdir() if p.is_file())


def _variant_gender(variant: str | None) -> str:
    """Read the ``gender`` line of a variant file; the plain language voices are male."""
    if not variant:
        return "male"
    path = _variants_dir() / variant
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "gender" and parts[1] in ("male", "female"):
                return parts[1]
    return "female" if variant.startswith("f") else "male"


def _trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading/trailing near-silence but keep a short margin so onsets are not clipped."""
    loud = np.flatnonzero(np.abs(audio) > _SILENCE_THRESHOLD)
    if loud.size == 0:
        return audio[:0]
    margin = int(_TRIM_MARGIN_S * sample_rate)
    return audio[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def synthesize(text: str, voice: Voice = Voice(), sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Speak ``text`` and return ``(float32 mono waveform in [-1, 1], sample_rate)``.

    The waveform is at eSpeak's native rate (22050 Hz) unless ``sample_rate`` is given, in which case it is
    resampled with soxr (high quality, deterministic).
    """
    pcm, native = _render(text, voice)
    audio = _trim_silence(pcm.astype(np.float32) / 32768.0, native)
    if sample_rate is None or sample_rate == native:
        return audio, native
    import soxr

    resampled = soxr.resample(audio, native, sample_rate, quality="HQ").astype(np.float32)
    return np.clip(resampled, -1.0, 1.0), int(sample_rate)
