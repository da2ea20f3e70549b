"""Linear probes: which clip-level facts survive each stage of the audio path.

Why: when a task stays at chance (say, speaker gender) the first question is whether the encoder
never heard it or the adapter threw it away. A probe answers that without the LLM: pool each clip's
representation at a stage (mean and standard deviation over its frames or tokens), fit a
logistic regression on the train manifest's clips, score accuracy on held-out clips. The same probe
at the encoder output and at the adapter output (what the LLM receives) localises the loss.

Stages:

* ``encoder`` -- the encoder states the adapter reads (frames, d_model);
* ``adapter`` -- the adapter's outputs, the LLM's audio embeddings (tokens, d_llm).

The probe is an L2-regularised multinomial logistic regression fitted to convergence with L-BFGS
on standardised features (statistics from the train clips only), the usual linear-probe protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from rich.table import Table

from moeaudio.data.tasks import task_kind
from moeaudio.errors import MissingDataError, UsageError
from moeaudio.io_utils import pyplot, save_figure
from moeaudio.model.audio_llm import AudioBatch, AudioLLM
from moeaudio.runtime.batching import Collator, Example, iter_batches

__all__ = [
    "STAGES",
    "ProbeResult",
    "fit_probe",
    "plot_probes",
    "pooled_stages",
    "probe_tasks",
    "render_probe_table",
    "results_to_json",
]

STAGES: tuple[str, ...] = ("encoder", "adapter")


@dataclass
class ProbeResult:
    task: str
    stage: str
    accuracy: float  # on the held-out clips
    train_accuracy: float
    chance: float  # 1 / number of classes
    majority: float  # accuracy of always answering the most frequent train class
    n_train: int
    n_eval: int


def _pool(x: torch.Tensor) -> torch.Tensor:
    """(length, d) -> (2 d,): mean and standard deviation over time (std 0 for a single step)."""
    std = x.std(0) if x.shape[0] > 1 else torch.zeros_like(x[0])
    return torch.cat([x.mean(0), std])


@torch.no_grad()
def pooled_stages(
    model: AudioLLM, examples: Sequence[Example], batch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Per stage, one pooled vector per example: {stage: (examples, 2 * width)}.

    Runs the model's own audio path (``Collator`` -> ``encoder_states`` -> ``adapt``) in batches;
    the LLM does not run.
    """
    collator = Collator(model, for_generation=True)

    def collate(batch: list[Example]) -> AudioBatch:  # the audio path needs no response
        return collator([replace(e, target=None) for e in batch])

    device = next(model.adapter.parameters()).device
    pooled: dict[str, list[torch.Tensor | None]] = {s: [None] * len(examples) for s in STAGES}
    for idx, batch in iter_batches(examples, batch_size, collate, device):
        states = model.encoder_states(batch)  # (batch, frames, d_model)
        y, token_lengths, _ = model.adapt(states, batch.frame_lengths)  # (valid_tokens, d_llm), (batch,)
        per_clip = y.split(token_lengths.tolist())
        for j, (i, n_frames) in enumerate(zip(idx, batch.frame_lengths.tolist(), strict=True)):
            pooled["encoder"][i] = _pool(states[j, :n_frames].float()).cpu()
            pooled["adapter"][i] = _pool(per_clip[j].float()).cpu()
    return {s: torch.stack(v) for s, v in pooled.items()}


def fit_probe(
    x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor, l2: float = 1e-2
) -> tuple[float, float]:
    """Fit the logistic-regression probe; returns (eval accuracy, train accuracy).

    Labels are class indices; eval labels outside the train classes (-1) count as errors.
    """
    mean, std = x_train.mean(0), x_train.std(0) + 1e-5  # train statistics only
    xt, xe = (x_train - mean) / std, (x_eval - mean) / std  # (n, features)
    n_classes = int(y_train.max()) + 1
    weight = torch.zeros(xt.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight + bias, y_train) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        train_acc = float(((xt @ weight + bias).argmax(1) == y_train).float().mean())
        eval_acc = float(((xe @ weight + bias).argmax(1) == y_eval).float().mean())
    return eval_acc, train_acc


def probe_tasks(
    model: AudioLLM,
    train: Sequence[Example],
    held_out: Sequence[Example],
    tasks: Sequence[str] | None = None,
    l2: float = 1e-2,
) -> list[ProbeResult]:
    """Probe every classification task (targets from a closed label set) at every stage.

    ``tasks``: task names from the manifests' ``task`` field (default: every task the evaluation
    scores as classification -- :func:`moeaudio.data.tasks.task_kind` -- so neither
    transcription, captions nor multiple choice).
    """

    def task_of(ex: Example) -> str:
        return str(ex.meta.get("task") or "unknown")

    names = sorted({task_of(e) for e in train})
    if tasks is None:
        tasks = [
            t for t in names if task_kind(t, [e.meta for e in train if task_of(e) == t]) == "classification"
        ]
    missing = [t for t in tasks if t not in names]
    if missing:
        raise UsageError(f"task(s) {missing} have no train items; tasks present: {names}")
    results = []
    for task in tasks:
        tr = [e for e in train if task_of(e) == task]
        ev = [e for e in held_out if task_of(e) == task]
        if not ev:
            raise MissingDataError(f"task {task!r} has no held-out items to score")
        labels = sorted({str(e.target) for e in tr})
        index = {label: i for i, label in enumerate(labels)}
        y_tr = torch.tensor([index[str(e.target)] for e in tr])
        y_ev = torch.tensor([index.get(str(e.target), -1) for e in ev])
        majority_label = int(torch.bincount(y_tr).argmax())
        majority = float((y_ev == majority_label).float().mean())
        x_tr, x_ev = pooled_stages(model, tr), pooled_stages(model, ev)
        for stage in STAGES:
            acc, train_acc = fit_probe(x_tr[stage], y_tr, x_ev[stage], y_ev, l2=l2)
            results.append(
                ProbeResult(task, stage, acc, train_acc, 1.0 / len(labels), majority, len(tr), len(ev))
            )
    return results


def results_to_json(results: Sequence[ProbeResult]) -> list[dict]:
    return [asdict(r) for r in results]


def render_probe_table(
    results: Sequence[ProbeResult], title: str = "linear probes (held-out accuracy)"
) -> Table:
    """Rich table: one row per task, one column per stage, chance beside."""
    table = Table(title=title)
    table.add_column("task")
    for stage in STAGES:
        table.add_column(stage, justify="right")
    table.add_column("chance", justify="right")
    table.add_column("n train/eval", justify="right")
    by_task: dict[str, dict[str, ProbeResult]] = {}
    for r in results:
        by_task.setdefault(r.task, {})[r.stage] = r
    for task, stages in by_task.items():
        any_r = next(iter(stages.values()))
        table.add_row(
            task,
            *(f"{stages[s].accuracy:.3f}" if s in stages else "-" for s in STAGES),
            f"{any_r.chance:.3f}",
            f"{any_r.n_train}/{any_r.n_eval}",
        )
    return table


def plot_probes(results: Sequence[ProbeResult], path: str | Path) -> Path:
    """Grouped bars (task x stage) with each task's chance level as a black tick."""
    plt = pyplot()

    tasks = list(dict.fromkeys(r.task for r in results))
    width = 0.8 / len(STAGES)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(tasks) + 2), 3.6))
    for j, stage in enumerate(STAGES):
        acc = {r.task: r.accuracy for r in results if r.stage == stage}
        xs = [i + (j - (len(STAGES) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(xs, [acc.get(t, 0.0) for t in tasks], width, label=stage)
    chance = {r.task: r.chance for r in results}
    ax.scatter(
        range(len(tasks)), [chance[t] for t in tasks], marker="_", s=600, color="black", label="chance"
    )
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy")
    ax.set_title("linear probes: what each stage still carries")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
