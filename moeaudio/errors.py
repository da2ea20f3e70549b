"""User faults: one base class, caught and printed in one place (:func:`moeaudio.options.command`,
which every command of ``moeaudio.cli`` and ``python -m moeaudio.train`` runs through).

Why a hierarchy: a bad recipe key, a manifest line that does not parse or a checkpoint directory
that is not one are the user's to fix, and deserve one clear line naming the file, line or key;
a ``TypeError`` or ``KeyError`` from our own code is a bug and must keep its traceback. So every
user-facing check raises a :class:`MoeaudioError` subclass, and nothing else is turned into a
one-line error -- except, as a safety net under those checks, an ``OSError`` naming a file whose
cause is the machine (missing, no permission, disk full, ...; ``moeaudio.options.ENVIRONMENT_ERRNOS``).
Each subclass also derives from the built-in exception its callers would expect (``ValueError``,
``FileNotFoundError``), so library users can catch either. Errors tied to one module live beside it
and derive from this base: ``config.RecipeError``, ``data.manifest.ManifestError``,
``data.audio.AudioDecodeError``, ``reproduce.study.StudyError``, ``train.distributed.RankFailedError``.
"""

from __future__ import annotations

__all__ = [
    "BusyError",
    "CheckpointError",
    "DiskFullError",
    "EvalDataError",
    "EvalError",
    "MissingDataError",
    "ModelLoadError",
    "MoeaudioError",
    "NoRouterError",
    "OptionError",
    "RunDirectoryError",
    "TrainingDivergedError",
    "UnknownNameError",
    "UsageError",
]


class MoeaudioError(Exception):
    """Base of every error the user can fix; the CLI prints its message and exits with status 2."""

    def __str__(self) -> str:  # plain message, also where KeyError would quote it
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UsageError(MoeaudioError, ValueError):
    """A command-line option or argument that does not make sense (names the option)."""


class UnknownNameError(UsageError, KeyError):
    """A name that is not one of the known ones (source, split, column); says which are known."""


class OptionError(UsageError, TypeError):
    """An option a function does not take; names the nearest valid one."""


class MissingDataError(MoeaudioError, FileNotFoundError):
    """Data a command needs does not exist; the message names the command that makes it."""


class CheckpointError(MoeaudioError, FileNotFoundError):
    """A path that is not a usable moeaudio checkpoint (or run directory holding one)."""


class EvalError(MoeaudioError, ValueError):
    """An evaluation that cannot run as asked (bad option, task without a text form, ...)."""


class EvalDataError(EvalError, FileNotFoundError):
    """No data for the task; the message names the ``moeaudio prepare ...`` command that makes it."""


class NoRouterError(MoeaudioError, ValueError):
    """The model's adapter has no router (dense, mlp or linear adapter): nothing to route."""


class ModelLoadError(MoeaudioError, OSError):
    """The encoder or LLM a recipe names cannot be loaded (not a local path, not cached, offline);
    the message names the recipe key (``encoder.name``, ``llm.name``, ``llm.tokenizer``)."""


class RunDirectoryError(MoeaudioError, FileExistsError):
    """A run directory that already holds checkpoints, used without ``--resume`` or ``--overwrite``."""


class TrainingDivergedError(MoeaudioError, FloatingPointError):
    """A loss term or a weight went NaN/Inf; the message names the step and the term, and the last
    good checkpoint (which is left as it was)."""


class DiskFullError(MoeaudioError, OSError):
    """No space left while writing (a checkpoint); what was written before is left intact."""


class BusyError(MoeaudioError, BlockingIOError):
    """A run directory or output that another live process is writing (it holds the lock,
    :class:`moeaudio.io_utils.FileLock`); the message names that process's pid, host and command."""
