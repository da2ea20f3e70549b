"""Library noise through logging: off by default on the command line, ``--verbose`` to see it.

Why: every command that loads a model printed what transformers, DeepSpeed, torch and the Hub had to
say (load reports, accelerator notices, tqdm bars for loading weights, Python warnings) around the
one table the user asked for. :func:`configure` (called by every command, see
:func:`moeaudio.options.command`) sends Python warnings through logging and sets the libraries'
loggers to ERROR (their warnings hidden, their errors kept), or, with ``verbose``, to WARNING with
moeaudio's own loggers at INFO. It also sets the environment variables that the libraries read when
they are first imported (``TRANSFORMERS_VERBOSITY``, ``HF_HUB_DISABLE_PROGRESS_BARS``, ``WANDB_SILENT``), so the
libraries loaded later by the command, and the ranks ``train --nproc`` starts, follow the same choice.

Library users of ``import moeaudio`` are left alone: a library does not configure logging for its caller.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["LIBRARY_LOGGERS", "configure", "verbose_enabled"]

#: Loggers of the libraries moeaudio drives (DeepSpeed's is "DeepSpeed", with its own stdout handler).
LIBRARY_LOGGERS: tuple[str, ...] = (
    "transformers", "torch", "DeepSpeed", "deepspeed", "datasets", "huggingface_hub", "peft", "accelerate",
    "tensorboard", "matplotlib", "PIL", "urllib3", "filelock", "fsspec", "numexpr", "wandb", "py.warnings",
)  # fmt: skip

_ENV_FLAG = "MOEAUDIO_VERBOSE"


class _MinLevel(logging.Filter):
    """Drops records below a level. Set on DeepSpeed's logger, which resets its own level at import."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


_handler: logging.Handler | None = None


def verbose_enabled() -> bool:
    """Whether this process (or the command that started it) asked for ``--verbose``."""
    return os.environ.get(_ENV_FLAG) == "1"


def configure(verbose: bool = False) -> None:
    """Route warnings through logging; library loggers at ERROR (WARNING with ``verbose``)."""
    global _handler
    os.environ[_ENV_FLAG] = "1" if verbose else "0"
    os.environ["TRANSFORMERS_VERBOSITY"] = "warning" if verbose else "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0" if verbose else "1"
    os.environ["WANDB_SILENT"] = "false" if verbose else "true"  # train.report_to: [wandb]
    library_level = logging.WARNING if verbose else logging.ERROR
    logging.captureWarnings(True)
    warnings.simplefilter("default" if verbose else "ignore")  # hidden warnings are not even formatted
    if _handler is None:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(_handler)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("moeaudio").setLevel(logging.INFO if verbose else logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(library_level)
        for f in [f for f in logger.filters if isinstance(f, _MinLevel)]:
            logger.removeFilter(f)
        logger.addFilter(_MinLevel(library_level))
    if "transformers" in sys.modules:  # already imported: its verbosity was read from the environment then
        import transformers

        transformers.utils.logging.set_verbosity(library_level)
        if verbose:
            transformers.utils.logging.enable_progress_bar()
        else:
            transformers.utils.logging.disable_progress_bar()
