"""What a training run shows and writes: start-up tables, progress bar, loggers, loss PNG.

The loggers are the recipe's ``train.report_to``: ``jsonl`` (``RUN/metrics.jsonl``), ``tensorboard``
(``RUN/tensorboard``) and ``wandb`` (Weights & Biases, imported only when asked for; ``WANDB_MODE=offline``
writes the run under ``RUN/wandb`` without an account). Every logger gets every logged record and the
final validation's headline numbers.

A run that starts at step ``T`` (``--resume`` from step-T after a crash, or 0 for a fresh start into a
directory a crashed run left logs in) first cuts the logs back to ``T``: ``metrics.jsonl`` keeps only
the records of steps up to ``T`` (rewritten atomically; a torn last line is dropped), and TensorBoard
opens a new event file with ``purge_step=T+1``, which tells TensorBoard to hide every earlier event of
step T+1 or later. So a step the crashed run logged after its last checkpoint appears once, as
logged again by the resumed run, never twice.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from moeaudio.config import Recipe, RecipeError
from moeaudio.eval.handlers import handler_for
from moeaudio.eval.validation import render_report
from moeaudio.io_utils import atomic_write_text, pyplot, save_figure


def _import_wandb():
    try:
        import wandb
    except ImportError as exc:
        raise RecipeError(
            "train.report_to includes wandb, but wandb is not installed: pip install 'moeaudio[wandb]' "
            "(or drop wandb from train.report_to)"
        ) from exc
    return wandb


class Reporter:
    """All output of `train`: the run's files (``writes``: rank 0 only) and the console (``prints``:
    rank 0 unless ``MOEAUDIO_QUIET=1``). Quiet silences the console, never the metrics, loss curve,
    TensorBoard events or validation results a run leaves behind."""

    def __init__(self, recipe: Recipe, run_dir: Path, writes: bool = True, prints: bool = True):
        from rich.console import Console

        self.recipe = recipe
        self.run_dir = run_dir
        self.writes = writes
        self.prints = writes and prints
        self.console = Console()
        self.report_to = set(recipe.train.report_to)
        self.metrics_path = run_dir / "metrics.jsonl"
        self.tb = None
        self.wandb_run = None
        self._wandb = (
            _import_wandb() if writes and "wandb" in self.report_to else None
        )  # fail before training
        self.status_suffix = ""
        if writes:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.yaml").write_text(recipe.to_yaml())

    def note(self, text: str) -> None:
        if self.prints:
            self.console.print(text, highlight=False)

    def warn(self, text: str, status: str = "") -> None:
        """A warning line in the log (``warning: ...``) and, with ``status``, a mark on the progress
        bar that stays until the run ends."""
        self.status_suffix = f" {status}" if status else self.status_suffix
        if self.prints:
            self.console.print(f"[bold yellow]warning:[/] {text}", highlight=False)

    def start(self, model, step: int = 0) -> None:
        """Start-up tables and loggers for a run that starts at ``step`` (the resumed checkpoint's, or
        0): the logs are first cut back to it (see the module docstring)."""
        if not self.writes:
            return
        self.cut_back(step)
        if self.prints:
            self._print_start(model)
        if "tensorboard" in self.report_to:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard hides the earlier files' events from this step on (a crashed run's)
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=step + 1)
        if self._wandb is not None:
            self.wandb_run = self._wandb.init(
                project=os.environ.get("WANDB_PROJECT", "moeaudio"),
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config=self.recipe.model_dump(mode="json"),
            )

    def _print_start(self, model) -> None:
        """The recipe and the parameter table."""
        from rich.syntax import Syntax
        from rich.table import Table

        self.console.rule(f"[bold]moeaudio train[/] {self.recipe.name}")
        self.console.print(
            Syntax(self.recipe.to_yaml(), "yaml", theme="ansi_dark", background_color="default")
        )
        table = Table("part", "parameters", "trainable", title="parameters")
        for part in ("encoder", "stacker", "adapter", "llm"):
            module = getattr(model, part)
            total = sum(p.numel() for p in module.parameters())
            trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
            table.add_row(part, f"{total:,}", f"{trainable:,}")
        counts = model.adapter.param_counts()
        table.caption = f"adapter active per audio token: {counts['active']:,} of {counts['total']:,}"
        self.console.print(table)

    def cut_back(self, step: int) -> int:
        """Drop the records of steps after ``step`` from ``metrics.jsonl`` (a crashed run logged them
        after its last checkpoint; the resumed run logs them again). Returns how many were dropped."""
        if not self.metrics_path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.metrics_path.read_text(errors="replace").splitlines():
            try:
                record_step = int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):  # a line torn by the crash
                record_step = None
            if record_step is not None and record_step <= step:
                kept.append(line + "\n")
            elif line.strip():
                dropped += 1
        if dropped:
            atomic_write_text(self.metrics_path, "".join(kept))
            self.note(
                f"{self.metrics_path}: dropped {dropped} record(s) logged after step {step} by an earlier run"
            )
        return dropped

    @contextlib.contextmanager
    def progress(self, total: int, done: int):
        if not self.prints:
            yield None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        with Progress(*columns, console=self.console) as bar:
            task = bar.add_task("train", total=total, completed=done, status="")
            yield (bar, task)

    def log(self, record: dict[str, float], progress) -> None:
        if not self.writes:
            return
        if "jsonl" in self.report_to:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, record["step"])
        if self.wandb_run is not None:
            self.wandb_run.log(
                {f"train/{k}": v for k, v in record.items() if k != "step"}, step=record["step"]
            )
        if not self.prints:
            return
        status = f"loss {record['loss']:.3f} lr {record['lr']:.2e} tok/s {record['tokens_per_s']:.0f}"
        if "aux_loss" in record:
            status += f" aux {record['aux_loss']:.3f}"
        if "load_spread" in record:
            status += f" load max/mean {record['load_spread']:.2f}"
        status += self.status_suffix
        if progress is not None:
            bar, task = progress
            bar.update(task, completed=record["step"], status=status)
        if not self.console.is_terminal and record["step"] % max(1, self.recipe.train.log_every) == 0:
            # logs and CI have no live bar: one plain line every log_every steps instead
            self.console.print(
                f"step {record['step']}/{self.recipe.train.max_steps} {status}", highlight=False
            )

    def finish(self, history: list[dict[str, float]]) -> None:
        if not self.writes or not history:
            return
        if self.tb is not None:
            self.tb.flush()  # closed after the validation numbers (final_table)
        path = plot_loss_curve(history, self.run_dir / "loss.png")
        self.note(f"loss curve: {path}")

    def close(self) -> None:
        """Close the loggers (after the final validation, if any)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None

    def final_table(self, report: dict[str, Any], result) -> None:
        if not self.writes:
            return
        headlines = {}
        for task, r in report.items():
            name, value = handler_for(r["kind"], r.get("scorer")).headline(r["metrics"])
            headlines[f"valid/{task}/{name}"] = value
        if self.tb is not None:
            for key, value in headlines.items():
                self.tb.add_scalar(key, value, result.steps)
        if self.wandb_run is not None:
            self.wandb_run.log(headlines, step=result.steps)
        atomic_write_text(self.run_dir / "validation.json", json.dumps(report, indent=1))
        if self.prints:
            self.console.print(render_report(report, title=f"validation after {result.steps} steps"))
            self.console.print(f"checkpoint: {result.checkpoint}   wall time: {result.wall_seconds:.0f} s")


#: The loss terms of the training objectives (next-token, ``ctc_embed``): drawn with the total, not as balance terms.
OBJECTIVE_LOSSES = ("lm_loss", "ctc_loss")


def plot_loss_curve(history: list[dict[str, float]], path: Path) -> Path:
    """Loss terms against step (LM loss, total, aux) in one PNG."""
    plt = pyplot()

    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    objective = [
        k for k in OBJECTIVE_LOSSES if k in history[-1]
    ]  # lm_loss, or ctc_loss in an alignment stage
    for key in ("loss", *objective):
        axes[0].plot(steps, [r.get(key, float("nan")) for r in history], label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[0].set_title("training loss")
    aux_keys = [k for k in history[-1] if k.endswith("_loss") and k not in OBJECTIVE_LOSSES]
    for key in aux_keys:
        axes[1].plot(steps, [r.get(key, float("nan")) for r in history], label=key)
    if "load_spread" in history[-1]:
        axes[1].plot(steps, [r.get("load_spread", float("nan")) for r in history], label="load max/mean")
    axes[1].set_xlabel("step")
    axes[1].set_title("balance")
    if axes[1].lines:
        axes[1].legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, tight=False)
