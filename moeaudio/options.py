"""Command options declared once: a dataclass whose fields carry their command-line help.

Why: a command's options used to be declared twice, once as typer parameters and once as the
plain function's parameters, then passed by position from one to the other. Here each command
has one options dataclass; :func:`command` turns it into a typer command whose parameters are
the fields, builds the dataclass from the parsed values and calls the plain function with it.
``moeaudio train`` and ``python -m moeaudio.train`` build their parsers from the same class.

Every command also gets ``--verbose`` / ``-v`` (library warnings, load reports and progress bars
shown; :func:`moeaudio.logs.configure`), without the options classes declaring it.

User faults (:class:`~moeaudio.errors.MoeaudioError`) are printed as one line on stderr with the
error's ``exit_code`` (2 unless it names another); so is an ``OSError`` about a named file whose cause
is the machine, not the code (missing, no permission, disk full, read-only, a file where a folder must
be, ...: :data:`ENVIRONMENT_ERRNOS`), a safety net under the explicit checks. Any other exception is a
bug and keeps its traceback. Warnings that moeaudio's own modules issue (e.g. audio repaired by
``--repair-audio``) are printed as ``warning: ...`` lines on stderr, every time, without Python's
file-and-line prefix.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
import json
import typing
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from moeaudio.errors import MoeaudioError, UsageError
from moeaudio.logs import configure

__all__ = [
    "VERBOSE_HELP",
    "InspectOptions",
    "ListOptions",
    "RecipeOptions",
    "argument",
    "command",
    "fail",
    "option",
    "parse_key_values",
    "print_json",
    "warn",
]

VERBOSE_HELP = "show the libraries' warnings, load reports and progress bars (hidden by default)"


#: ``OSError`` causes that are the machine's state, not a bug: printed as ``error: FILE: reason``.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)


def option(default: Any = None, help: str = "", *, flag: str | None = None, hidden: bool = False) -> Any:
    """A ``--flag`` option (default flag: the field name with dashes)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "hidden": hidden})


def argument(default: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A positional argument (required unless it has a default)."""
    return dataclasses.field(default=default, metadata={"help": help, "argument": True})


def fail(message: str, status: int = 2) -> typing.NoReturn:
    """Print ``error: message`` on stderr and exit with ``status``."""
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False
    )  # one line, greppable; escaped: a message quoting "[enforce fail at ...]" is text, not markup
    raise typer.Exit(status)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr (the command goes on)."""
    Console(stderr=True).print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


def _show_warning(
    message, category, filename, lineno, file=None, line=None, *, _default=warnings.showwarning
):
    if getattr(category, "__module__", "").startswith("moeaudio"):
        warn(str(message))
    else:
        _default(message, category, filename, lineno, file, line)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=1, allow_nan=True, default=str))


def parse_key_values(pairs: list[str] | None, what: str = "--opt") -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    import yaml

    parsed: dict[str, Any] = {}
    for text in pairs or []:
        if "=" not in text:
            raise UsageError(f"{what} '{text}' must look like key=value (e.g. {what} test_fold=5)")
        key, value = text.split("=", 1)
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # as config.parse_override does for recipe overrides
            problem = str(exc).splitlines()[0]
            raise UsageError(f"{what} '{text}': the value is not valid YAML ({problem}); quote it") from None
    return parsed


def _parameter(f: dataclasses.Field, hint: Any) -> inspect.Parameter:
    meta = f.metadata
    if meta.get("argument"):
        info: Any = typer.Argument(help=meta.get("help", ""))
    else:
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        info = typer.Option(flag, help=meta.get("help", ""), hidden=meta.get("hidden", False))
    default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[hint, info]
    )


def _verbose_parameter() -> inspect.Parameter:
    info = typer.Option("--verbose", "-v", help=VERBOSE_HELP)
    return inspect.Parameter(
        "verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, info]
    )


def command(options_cls: type, run: Callable[[Any], Any]) -> Callable[..., Any]:
    """A typer-ready function whose parameters are ``options_cls``'s fields plus ``--verbose``; it
    configures logging (:func:`moeaudio.logs.configure`) and calls ``run(options)``."""
    hints = typing.get_type_hints(options_cls)
    params = [_parameter(f, hints[f.name]) for f in dataclasses.fields(options_cls)]
    params.append(_verbose_parameter())

    @functools.wraps(run)
    def wrapper(**kwargs: Any) -> None:
        configure(verbose=kwargs.pop("verbose", False))
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("always", module=r"moeaudio\.")
                warnings.showwarning = _show_warning
                run(options_cls(**kwargs))
        except MoeaudioError as exc:
            fail(str(exc), getattr(exc, "exit_code", 2))
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS or exc.filename is None:
                raise
            other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
            fail(f"{exc.filename}{other}: {exc.strerror}")

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must see the options, not run(options)
    return wrapper


# ----------------------------------------------------------------------------- the recipe commands
# `recipes list|show`, `studies list` and `inspect` belong to no package of their own: their options
# live here, beside the helpers (commands: moeaudio.inspection, moeaudio.reproduce.commands).


@dataclasses.dataclass
class RecipeOptions:
    """A recipe and its overrides (``recipes show``)."""

    recipe: str = argument(help="recipe YAML path or shipped name (e.g. quickstart)")
    overrides: list[str] | None = argument(None, "section.key=value overrides, e.g. adapter.top_k=2")


@dataclasses.dataclass
class InspectOptions(RecipeOptions):
    """A recipe, its overrides, and the output form (``inspect``)."""

    as_json: bool = option(False, "print one JSON object", flag="--json")
    world_size: int = option(
        1, "ranks the run will launch on: the global batch, accumulation and steps it resolves to"
    )


@dataclasses.dataclass
class ListOptions:
    """``recipes list`` / ``studies list``: the output form."""

    as_json: bool = option(False, "print one JSON list", flag="--json")
