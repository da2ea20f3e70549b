"""`moeaudio reproduce`: train, evaluate and analyse every arm x seed of a study, then write it up.

Each run (arm x seed, :mod:`moeaudio.reproduce.plan`) goes through three states, read from its folder
``OUTPUT/<arm>/seed-<seed>`` so a killed study resumes where it stopped:

* no final checkpoint: train it (``--resume`` from its last checkpoint when it has one);
* final checkpoint (``trainer_state.json`` step = ``train.max_steps``), no ``done.json``: evaluate
  every column of the study (``moeaudio eval``; result files already beside the checkpoint are
  reused), then write ``done.json`` atomically;
* ``done.json``: finished; nothing runs again.

``done.json`` holds the recipe's fingerprint; a folder trained with another recipe (an edited study, other
overrides) is an error, never silently mixed in. ``--collect`` does the same without training (runs
launched elsewhere with ``--print-commands``); unfinished runs are listed as missing. Then the figure
analyses run on the finished checkpoints (cached in ``<run>/analysis/<name>.json``) and
``results.json``, ``results.md`` and ``figures/<name>.png`` are written (:mod:`~moeaudio.reproduce.report`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from moeaudio.analyze.commands import analyze_conflict, analyze_routing_manifest
from moeaudio.analyze.conflict import (
    conflict_curve_summary,
    plot_conflict,
    plot_conflict_over_training,
    result_from_json,
)
from moeaudio.analyze.routing import RoutingStats, plot_activation_heatmap
from moeaudio.config import load_recipe
from moeaudio.eval.evaluate import run_eval
from moeaudio.inspection import adapter_summary
from moeaudio.io_utils import FileLock, atomic_write_text
from moeaudio.reproduce.base_llm import base_llm_checkpoint
from moeaudio.reproduce.items import item_scores
from moeaudio.reproduce.options import ReproduceOptions
from moeaudio.reproduce.plan import (
    PlannedRun,
    StudyPlan,
    launcher_script,
    plan_study,
    recipe_fingerprint,
    slurm_script,
)
from moeaudio.reproduce.plots import plot_differences
from moeaudio.reproduce.report import build_results, render_markdown
from moeaudio.reproduce.study import Analysis, StudyError, check_comparable, load_study
from moeaudio.runtime.checkpoint import WEIGHTS, finished_checkpoint, load_trainer_state
from moeaudio.runtime.device import pick_device
from moeaudio.runtime.examples import manifest_path
from moeaudio.runtime.run_dir import DONE, RunDir
from moeaudio.train.launch import train_recipe

__all__ = [
    "DONE",
    "check_equal_params",
    "final_checkpoint",
    "finished_twin",
    "process_run",
    "read_done",
    "reproduce",
    "run_study",
]

# DONE (moeaudio.runtime.run_dir): the marker a finished run (trained and evaluated) gets, written
# atomically after evaluation.


# ----------------------------------------------------------------------------- progress


class StudyProgress:
    """Plain lines on stderr: runs done / total and the time left (the trainer draws its own bar)."""

    def __init__(self, total: int, done: int, expected_minutes: float | None, enabled: bool = True):
        self.total, self.done = total, done
        self.expected = expected_minutes
        self.durations: list[float] = []
        self.console = Console(stderr=True, highlight=False) if enabled else None

    def time_left(self) -> str:
        left = self.total - self.done
        if left == 0:
            return "nothing left"
        if self.durations:
            minutes = left * sum(self.durations) / len(self.durations) / 60
            return f"about {minutes:.0f} min left"
        if self.expected:
            return f"about {left * self.expected:.0f} min left (expected {self.expected:g} min per run)"
        return "time left unknown until a run finishes"

    def line(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[reproduce {self.done}/{self.total} runs done, {self.time_left()}] {text}")

    def finished(self, seconds: float | None) -> None:
        self.done += 1
        if seconds is not None:
            self.durations.append(seconds)


# ----------------------------------------------------------------------------- one run


def read_done(run: PlannedRun) -> dict[str, Any] | None:
    """The run's done record, or None while it is not finished (no marker, or its checkpoint is gone)."""
    record = RunDir(run.run_dir).read_done()
    if record is None:
        return None
    ckpt = run.run_dir / record.get("checkpoint", "")
    if not _same_run(record, ckpt, run.fingerprint):
        raise StudyError(
            f"{run.run_dir} was trained with a different recipe than the study now asks for "
            "(edited study or other overrides): use another --output, or delete that folder to retrain it"
        )
    if not (ckpt / WEIGHTS).exists():
        return None
    return record


def final_checkpoint(run: PlannedRun) -> Path | None:
    """The run's checkpoint at ``train.max_steps``, if training got there."""
    return finished_checkpoint(run.run_dir, run.max_steps)


def finished_twin(plan: StudyPlan, run: PlannedRun) -> tuple[Path, dict[str, Any]] | None:
    """The final checkpoint and done record of a finished run of another study, beside this one,
    with the same fingerprint.

    Studies share arms: Table 3's ``balance`` arm and Table 2's ``e8k4`` are Table 1's ``moe`` (same
    recipe, same overrides, same seed), so their fingerprints are equal and training them again would
    spend the same CPU hours for the same weights. Only runs marked done are taken; a twin still
    training elsewhere is not.
    """
    for done in sorted(plan.output.parent.glob(f"*/*/seed-{run.seed}/{DONE}")):
        if done.parent.resolve() == run.run_dir.resolve():
            continue
        try:
            record = json.loads(done.read_text())
        except (OSError, ValueError):
            continue
        ckpt = done.parent / record.get("checkpoint", "")
        if (ckpt / WEIGHTS).exists() and _same_run(record, ckpt, run.fingerprint):
            return ckpt.resolve(), record
    return None


def _same_run(record: dict[str, Any], ckpt: Path, fingerprint: str) -> bool:
    """Whether a done record's run is the run of ``fingerprint``: its recorded fingerprint, or else the
    fingerprint of the recipe its checkpoint saved, as this version computes it (a record written
    before :data:`~moeaudio.reproduce.plan.OBSERVATION_ONLY` grew still matches its twins)."""
    return record.get("fingerprint") == fingerprint or _saved_fingerprint(ckpt) == fingerprint


def _saved_fingerprint(ckpt: Path) -> str | None:
    """The fingerprint of the recipe a checkpoint saved (as this version computes it), or None."""
    saved = ckpt / "recipe.yaml"
    return recipe_fingerprint(load_recipe(saved)) if saved.exists() else None


def _relative(path: Path, start: Path) -> str:
    """``path`` as seen from ``start`` (``..`` allowed: a reused twin lives in a sibling study)."""
    return os.path.relpath(path.resolve(), start.resolve())


def _check_trained_recipe(run: PlannedRun, ckpt: Path) -> None:
    saved = _saved_fingerprint(ckpt)
    if saved is not None and saved != run.fingerprint:
        raise StudyError(
            f"{ckpt} was trained with a different recipe than the study now asks for: use another "
            "--output, or delete that run folder to retrain it"
        )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _eval_file(ckpt: Path, task: str, modality: str) -> Path:
    return ckpt / "eval" / (f"{task}.text.json" if modality == "text" else f"{task}.json")


def metric_value(result: dict[str, Any], metric: str | None, where: Path) -> float:
    """The column's number in an eval result: ``metric`` (a dotted path into ``metrics``, e.g.
    ``by_domain.music.accuracy``) or the task's headline metric."""
    value: Any = result["metrics"]
    for part in (metric or result["metric"]).split("."):
        if not isinstance(value, dict) or part not in value:
            raise StudyError(
                f"{where}: no metric '{metric}' (at '{part}'); its metrics: {sorted(result['metrics'])}"
            )
        value = value[part]
    return float(value)


def evaluate_run(
    plan: StudyPlan, run: PlannedRun, ckpt: Path, device: str | None, only: set[str] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Each column's number for the checkpoint (``moeaudio eval``; existing result files reused);
    ``only``: just these columns."""
    settings = plan.study.eval_settings(plan.scale).model_dump(exclude_none=True)
    values: dict[str, float] = {}
    files: dict[str, str] = {}
    for col in plan.study.columns_at(plan.scale):
        if col.gap is not None or (only is not None and col.name not in only):
            continue
        task = col.task.at(plan.scale)
        assert task is not None
        # llm: base -> the untrained model the arms start from, evaluated once for all (base_llm.py)
        source = base_llm_checkpoint(run.recipe, plan.output) if col.llm == "base" else ckpt
        manifest = col.manifest.at(plan.scale)
        path = _eval_file(source, task, col.modality)
        if manifest is not None:  # one task on several benchmarks (emotion: CREMA-D, RAVDESS)
            path = path.with_name(f"{path.stem}.{_slug(col.name)}.json")
        if path.exists():
            result = json.loads(path.read_text())
        else:
            result = run_eval(
                task, source, manifest=manifest, output=path if manifest is not None else None,
                modality=col.modality, progress=False, device=device, **settings,
            )  # fmt: skip
        values[col.name] = metric_value(result, col.metric, path)
        files[col.name] = _relative(path, run.run_dir)
    return values, files


def process_run(
    plan: StudyPlan,
    run: PlannedRun,
    progress: StudyProgress,
    train: bool = True,
    device: str | None = None,
    reuse: bool = True,
) -> dict[str, Any] | None:
    """Bring one run to done (train if needed and allowed, evaluate, mark); its record, or None.

    With ``reuse``, a run that has not started takes the checkpoint of a finished twin in a sibling
    study (:func:`finished_twin`) instead of training.
    """
    record = read_done(run)
    if record is not None:
        return _complete(plan, run, record, device, progress)
    ckpt = final_checkpoint(run)
    twin = None
    train_seconds = None
    if ckpt is None and reuse and RunDir(run.run_dir).latest() is None:
        found = finished_twin(plan, run)
        if found is not None:
            twin = ckpt = found[0]
            train_seconds = found[1].get("train_seconds")  # what training it took, where it ran
            progress.line(f"{run.key}: same recipe and seed as {twin}: evaluating that checkpoint")
    if ckpt is None:
        if not train:
            progress.line(f"{run.key}: no final checkpoint in {run.run_dir}: missing")
            return None
        partial = RunDir(run.run_dir).latest()
        if partial is not None:
            _check_trained_recipe(run, partial)
        progress.line(f"{run.key}: training" + (f" (resuming from {partial.name})" if partial else ""))
        start = time.time()
        result = train_recipe(
            run.recipe.model_copy(deep=True), run.run_dir, resume=partial is not None, evaluate=False
        )
        train_seconds = time.time() - start
        ckpt = result.checkpoint
    else:
        _check_trained_recipe(run, ckpt)
    columns = [c for c in plan.study.columns_at(plan.scale) if c.gap is None]
    progress.line(f"{run.key}: evaluating {len(columns)} column(s)")
    start = time.time()
    values, files = evaluate_run(plan, run, ckpt, device)
    eval_seconds = time.time() - start
    record = {
        "study": plan.study.name,
        "scale": plan.scale,
        "arm": run.arm,
        "seed": run.seed,
        "recipe": run.recipe_ref,
        "overrides": run.overrides,
        "fingerprint": run.fingerprint,
        "checkpoint": _relative(ckpt, run.run_dir),
        "reused_from": None if twin is None else str(twin),
        "steps": load_trainer_state(ckpt, ("step",))["step"],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "values": values,
        "eval_files": files,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_done(run, record)
    trained_here = twin is None and train_seconds is not None
    progress.finished(train_seconds + eval_seconds if trained_here else None)
    return record


def _write_done(run: PlannedRun, record: dict[str, Any]) -> None:
    """The run's ``done.json``, written atomically (a killed study never leaves half a marker)."""
    RunDir(run.run_dir).write_done(record)


def _complete(
    plan: StudyPlan, run: PlannedRun, record: dict[str, Any], device: str | None, progress: StudyProgress
) -> dict[str, Any]:
    """A finished run's record with every column of the study: columns added after it finished are
    evaluated now (their eval files reused when there) and the record rewritten; nothing is retrained."""
    wanted = {c.name for c in plan.study.columns_at(plan.scale) if c.gap is None}
    missing = wanted - set(record.get("values", {}))
    if not missing:
        return record
    progress.line(f"{run.key}: finished; evaluating {len(missing)} column(s) added since")
    values, files = evaluate_run(plan, run, run.run_dir / record["checkpoint"], device, only=missing)
    record = {
        **record,
        "values": {**record["values"], **values},
        "eval_files": {**record["eval_files"], **files},
    }
    _write_done(run, record)
    return record


def collect_items(
    plan: StudyPlan, records: dict[str, dict[str, Any] | None]
) -> dict[str, dict[str, dict[int, dict[str, tuple[float, float]]]]]:
    """arm -> column -> seed -> per-item scores, from the eval files of every finished run (columns
    whose metric is not a sum over items, or whose files predate per-item records, are left out)."""
    out: dict[str, dict[str, dict[int, dict[str, tuple[float, float]]]]] = {}
    for run in plan.runs:
        record = records.get(run.key)
        if record is None:
            continue
        for col in plan.study.columns_at(plan.scale):
            rel = record.get("eval_files", {}).get(col.name)
            if col.gap is not None or rel is None:
                continue
            scores = item_scores(run.run_dir / rel, col.metric)
            if scores is not None:
                out.setdefault(run.arm, {}).setdefault(col.name, {})[run.seed] = scores
    return out


# ----------------------------------------------------------------------------- analyses and figures


def _analysis(an: Analysis, run: PlannedRun, ckpt: Path, device: str) -> dict[str, Any]:
    path = run.run_dir / "analysis" / f"{an.name}.json"
    if path.exists():
        return json.loads(path.read_text())
    manifest = manifest_path(run.recipe, an.split)
    if an.kind == "routing":
        if run.recipe.adapter.kind != "moe":
            data: dict[str, Any] = {"skipped": f"a {run.recipe.adapter.kind} adapter has no router"}
        else:
            stats, data = analyze_routing_manifest(manifest, [ckpt], limit=an.limit, device=device)
            st = next(iter(stats.values()))
            data.update(num_experts=st.num_experts, top_k=st.top_k, groups=st.groups, counts=st.counts)
    else:
        _, data = analyze_conflict(
            manifest, [ckpt], an.num_batches, an.batch_size, seed=0, limit=an.limit, device=device
        )
    atomic_write_text(path, json.dumps(data, indent=1, default=str))
    return data


def run_analyses(
    plan: StudyPlan, records: dict[str, dict[str, Any] | None], device: str, progress: StudyProgress
) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """analysis name -> arm -> seed -> its JSON, for every finished run of the arms it compares."""
    out: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for an in plan.study.analyses:
        out[an.name] = {}
        for run in plan.runs:
            record = records.get(run.key)
            if run.arm not in an.arms or record is None:
                continue
            progress.line(f"{run.key}: {an.kind} analysis '{an.name}'")
            data = _analysis(an, run, run.run_dir / record["checkpoint"], device)
            out[an.name].setdefault(run.arm, {})[run.seed] = data
    return out


def _routing_stats(data: dict[str, Any]) -> RoutingStats:
    return RoutingStats(
        num_experts=data["num_experts"],
        top_k=data["top_k"],
        groups=list(data["groups"]),
        activation=data["activation"],
        load=data["load"],
        maxvio=data["maxvio"],
        entropy=data["entropy"],
        normalized_entropy=data["normalized_entropy"],
        mutual_information=data["mutual_information"],
        tokens_per_group=data["tokens_per_group"],
        counts=data.get("counts", {}),
    )


def draw_figures(
    plan: StudyPlan, analyses: dict[str, dict[str, dict[int, dict[str, Any]]]]
) -> dict[str, dict[str, Any]]:
    """One PNG per analysis (arms side by side) from the first seed every compared arm finished."""
    figures: dict[str, dict[str, Any]] = {}
    for an in plan.study.analyses:
        per_arm = analyses.get(an.name, {})
        arms = [a for a in an.arms if a in plan.arms]
        for seed in plan.seeds:
            data = {a: per_arm.get(a, {}).get(seed) for a in arms}
            if any(d is None for d in data.values()):
                continue
            drawn = {a: d for a, d in data.items() if "skipped" not in d}
            if not drawn:
                break
            png = plan.output / "figures" / f"{an.name}.png"
            if an.kind == "routing":
                plot_activation_heatmap(
                    {f"{a} (seed {seed})": _routing_stats(d) for a, d in drawn.items()}, png
                )
            else:
                results = {f"{a} (seed {seed})": result_from_json(d) for a, d in drawn.items()}
                plot_conflict(results, png, influence_key=an.influence)
            figures[an.name] = {"figure": str(png.relative_to(plan.output)), "figure_seed": seed}
            break
    return figures


# ----------------------------------------------------------------------------- the study


def check_equal_params(plan: StudyPlan) -> dict[str, int]:
    """Total adapter linear weights per arm; a StudyError when the study asks for equal ones and they differ."""
    first = {run.arm: run for run in reversed(plan.runs)}
    counts = {
        arm: adapter_summary(first[arm].recipe)["adapter_params_breakdown"]["linear_weights"]
        for arm in plan.arms
    }
    if plan.study.equal_total_params and len(set(counts.values())) > 1:
        raise StudyError(
            f"study '{plan.study.name}' compares adapters of equal total parameters, but at scale "
            f"'{plan.scale}' their linear weights differ: "
            + ", ".join(f"{arm} {n:,}" for arm, n in counts.items())
        )
    return counts


def adapter_weights(plan: StudyPlan) -> dict[str, dict[str, int]]:
    """Adapter linear weights per arm, total and active per audio token, computed from each arm's model
    at the plan's scale (``moeaudio inspect``): the numbers the report's row labels show, so a CPU twin is
    never labelled with the paper's 94.4M / 70.8M."""
    first = {run.arm: run for run in reversed(plan.runs)}
    out = {}
    for arm in plan.arms:
        breakdown = adapter_summary(first[arm].recipe)["adapter_params_breakdown"]
        out[arm] = {"total": breakdown["linear_weights"], "active": breakdown["active_linear_weights"]}
    return out


def check_launched(plan: StudyPlan, records: dict[str, dict[str, Any] | None]) -> None:
    """The finished arms of each seed, at the world sizes they were trained with (each checkpoint's
    ``trainer_state.json``), share their resolved global batch, steps and tokens: runs launched
    elsewhere with different NPROC_PER_NODE are caught here, not in the table."""
    for seed in plan.seeds:
        recipes, worlds = {}, {}
        for run in plan.runs:
            record = records.get(run.key)
            if run.seed != seed or record is None:
                continue
            state = load_trainer_state(run.run_dir / record["checkpoint"], ("step",))
            recipes[run.arm], worlds[run.arm] = run.recipe, int(state.get("world_size", 1))
        if len(recipes) > 1:
            try:
                check_comparable(recipes, worlds)
            except StudyError as exc:
                raise StudyError(f"seed {seed}, as trained: {exc}") from None


def _training_history(ckpt: Path) -> list[dict[str, Any]]:
    """The training log of the run that wrote ``ckpt``: the history its ``trainer_state.json`` keeps
    (written with every checkpoint, quiet runs included), else the run's ``metrics.jsonl``."""
    state = ckpt / "trainer_state.json"
    if state.exists():
        history = json.loads(state.read_text()).get("history")
        if isinstance(history, list) and history:
            return [h for h in history if isinstance(h, dict)]
    for log in (ckpt.parent.parent / "metrics.jsonl", ckpt.parent / "metrics.jsonl"):
        if log.exists():
            out = []
            for line in log.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a torn last line
            return out
    return []


def training_conflict_curves(
    plan: StudyPlan, records: dict[str, dict[str, Any] | None]
) -> tuple[dict[str, dict[int, dict[str, dict[str, float]]]], dict[str, int]]:
    """arm -> step -> adapter part -> ``{"cross", "floor"}`` averaged over the finished seeds whose
    training log (:func:`_training_history`) has the per-part conflict records of
    ``train.conflict_every``; and the number of seeds per arm."""
    acc: dict[str, dict[int, dict[str, list[dict[str, float]]]]] = {}
    seeds: dict[str, int] = {}
    for run in plan.runs:
        record = records.get(run.key)
        if record is None:
            continue
        found = False
        for rec in _training_history(run.run_dir / record["checkpoint"]):
            summary = conflict_curve_summary(rec)
            if summary and "step" in rec:
                found = True
                at_step = acc.setdefault(run.arm, {}).setdefault(int(rec["step"]), {})
                for part, value in summary.items():
                    at_step.setdefault(part, []).append(value)
        seeds[run.arm] = seeds.get(run.arm, 0) + found
    curves = {
        arm: {
            step: {
                part: {k: sum(v[k] for v in vals) / len(vals) for k in ("cross", "floor")}
                for part, vals in parts.items()
            }
            for step, parts in sorted(steps.items())
        }
        for arm, steps in acc.items()
    }
    return curves, seeds


def run_study(
    plan: StudyPlan, train: bool = True, device: str | None = None, progress: bool = True, reuse: bool = True
) -> dict[str, Any]:
    """Train (unless ``train`` is False), evaluate, analyse, and write results.json / results.md."""
    check_equal_params(plan)
    plan.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        plan.output / "study.yaml", yaml.safe_dump(plan.study.model_dump(mode="json"), sort_keys=False)
    )
    already = sum(read_done(run) is not None for run in plan.runs)
    bar = StudyProgress(len(plan.runs), already, plan.study.minutes_per_run.get(plan.scale), enabled=progress)
    records = {run.key: process_run(plan, run, bar, train, device, reuse) for run in plan.runs}
    check_launched(plan, records)
    analysis_device = str(pick_device(device))
    analyses = run_analyses(plan, records, analysis_device, bar)
    figures = draw_figures(plan, analyses)
    items, weights = collect_items(plan, records), adapter_weights(plan)
    results = build_results(plan, records, analyses, figures, items, weights)
    png = plot_differences(results, plan.output / "figures" / "differences.png")
    results["differences_figure"] = None if png is None else str(png.relative_to(plan.output))
    curves, curve_seeds = training_conflict_curves(plan, records)
    labels = {a: plan.study.arm(a).label for a in curves}
    png = plot_conflict_over_training(
        {labels[a]: steps for a, steps in curves.items()},
        plan.output / "figures" / "conflict_over_training.png",
        f"{plan.study.name}: gradient agreement between domains during training (mean over seeds)",
    )
    results["conflict_over_training"] = (
        None
        if png is None
        else {
            "figure": str(png.relative_to(plan.output)),
            "seeds": curve_seeds,
            "curves": {a: {str(s): parts for s, parts in steps.items()} for a, steps in curves.items()},
        }
    )
    atomic_write_text(plan.output / "results.json", json.dumps(results, indent=1))
    atomic_write_text(plan.output / "results.md", render_markdown(results))
    bar.line(f"wrote {plan.output / 'results.md'} and results.json" + (", figures/" if figures else ""))
    return results


def reproduce(opts: ReproduceOptions) -> dict[str, Any]:
    """`moeaudio reproduce`: print the launcher commands, or run (or collect) the study."""
    opts.validate()
    study = load_study(opts.study)
    plan = plan_study(
        study, opts.scale, opts.seeds, opts.arm_list(), opts.output, opts.overrides or [],
        world_size=opts.ranks(), gpus_per_node=opts.gpus_per_node,
    )  # fmt: skip
    if opts.print_commands:
        check_equal_params(plan)
        script = launcher_script(plan, opts.launcher)
        path = atomic_write_text(plan.output / "commands.sh", script)
        slurm = atomic_write_text(plan.output / "slurm.sh", slurm_script(plan))
        return {"commands": script, "path": str(path), "slurm": str(slurm)}
    # one run of a study's folder at a time: a second one is refused at once, naming the first
    with FileLock(plan.output, "reproduce", hint="or give another --output DIR", directory=True):
        return run_study(plan, train=not opts.collect, device=opts.device, reuse=opts.reuse)
