"""The paper's evaluation protocol as data: fixed few-shot examples and prompt templates per benchmark.

``--few-shot N`` alone draws its shots from the checkpoint's train manifest (items of the same task).
A paper-scale training mixture holds no MMAU or VoiceBench items, so that draw finds nothing; and a
protocol whose shots change with the training data is no fixed protocol. A *shot pool* file fixes, per
benchmark (the ``--task`` name):

* ``source``: ``benchmark`` (the shots are items of the evaluated manifest itself, left out of the
  scored items so no question is its own example) or a manifest path (a dev split; a relative path
  is taken beside the evaluated manifest, e.g. ``valid.jsonl`` next to a preparer's ``test.jsonl``);
* ``ids``: the shot items, in the order shown (``--few-shot N`` takes the first N), or, without
  ``ids``, ``seed``: N items drawn once with that seed (classification tasks cover distinct labels
  first). Either way the ids used are written into every result (``few_shot_ids``);
* ``template`` / ``text_template``: the instruction of every item, shots included, in audio and in
  ``--modality text`` evaluation. Fields: ``{question}`` (``meta.question``, else the item's
  instruction), ``{instruction}``, ``{choices}`` (``A. ...`` lines), ``{text_prompt}``
  (VoiceBench's question in writing).

The file is YAML: ``{description: ..., benchmarks: {mmau: {...}, mmsu: {...}}}``. A shipped pool is
named by its file stem under ``recipes/studies/shots/`` (``paper``), any other by its path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moeaudio.config import STUDIES_DIR, shipped_recipes
from moeaudio.data.manifest import Item
from moeaudio.data.tasks import format_choices
from moeaudio.errors import EvalDataError, EvalError

__all__ = ["BenchmarkShots", "ShotPool", "apply_template", "load_shot_pool", "pick_shots"]

SHOTS_DIR = "shots"  # under recipes/studies/
_FIELDS = ("question", "instruction", "choices", "text_prompt")


class BenchmarkShots(BaseModel):
    """One benchmark's shots and prompt templates."""

    model_config = ConfigDict(extra="forbid")

    source: str = "benchmark"  # benchmark | a manifest path (a dev split)
    ids: list[str] | None = None
    seed: int = 0  # without ids: the draw's seed
    template: str | None = None
    text_template: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _check(self) -> BenchmarkShots:
        if self.ids is not None and (not self.ids or len(set(self.ids)) < len(self.ids)):
            raise ValueError("ids must be a non-empty list without repeats (or left out to draw with seed)")
        for name in ("template", "text_template"):
            text = getattr(self, name)
            if text is not None:
                try:
                    text.format(**dict.fromkeys(_FIELDS, ""))
                except (KeyError, IndexError, ValueError) as exc:
                    raise ValueError(f"{name}: {exc!r}; the fields are {', '.join(_FIELDS)}") from None
        return self


class ShotPool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    benchmarks: dict[str, BenchmarkShots] = Field(default_factory=dict)


@dataclass(frozen=True)
class LoadedPool:
    name: str  # what the result records: the shipped name or the path given
    pool: ShotPool


def _resolve(name: str) -> tuple[str, str]:
    path = Path(name)
    if path.is_file():
        return str(path), path.read_text()
    node = shipped_recipes() / STUDIES_DIR / SHOTS_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if "/" not in name and node.is_file():
        return name, node.read_text()
    raise EvalError(f"shot pool '{name}' not found: give a YAML path or a shipped pool (paper)")


def load_shot_pool(name: str) -> LoadedPool:
    """The pool file ``name`` (a path, or a shipped pool's name), checked."""
    label, text = _resolve(name)
    try:
        raw = yaml.safe_load(text) or {}
        return LoadedPool(label, ShotPool.model_validate(raw))
    except yaml.YAMLError as exc:
        raise EvalError(f"shot pool {label}: not valid YAML: {exc}") from None
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise EvalError(f"shot pool {label}: {where}") from None


def apply_template(template: str | None, item: Item, text: bool = False) -> Item:
    """``item`` with its instruction rendered from ``template`` (unchanged without one); ``text``: the
    template is for ``--modality text``, whose prompt is ``meta.text_instruction``, set too."""
    if template is None:
        return item
    meta: dict[str, Any] = item.meta or {}
    fields = {
        "question": str(meta.get("question") or item.instruction or ""),
        "instruction": item.instruction or "",
        "choices": format_choices(item.choices) if item.choices else "",
        "text_prompt": str(meta.get("text_prompt") or ""),
    }
    rendered = template.format(**fields).strip()
    new_meta = dict(meta)
    if text:  # --modality text reads meta.text_instruction as the whole prompt
        new_meta["text_instruction"] = rendered
    return replace(item, instruction=rendered, meta=new_meta)


def pick_shots(
    shots: BenchmarkShots, pool: list[Item], n: int, task: str, where: str, classification: bool = False
) -> list[Item]:
    """The first ``n`` of ``shots.ids`` found in ``pool`` (an error naming the missing ids), or ``n``
    items drawn with ``shots.seed`` (classification: distinct labels first)."""
    if shots.ids is not None:
        if n > len(shots.ids):
            raise EvalDataError(f"--few-shot {n}: the shot pool lists only {len(shots.ids)} ids for '{task}'")
        by_id = {item.id: item for item in pool}
        wanted = shots.ids[:n]
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise EvalDataError(
                f"the shot pool's ids for '{task}' are not in {where}: {', '.join(missing[:5])}"
                + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
                + "; prepare the benchmark with its preparer (the ids are the preparer's) or edit the pool"
            )
        return [by_id[i] for i in wanted]
    rng = random.Random(shots.seed)
    order = sorted(pool, key=lambda item: item.id)  # the draw does not depend on the manifest's order
    rng.shuffle(order)
    if not classification:
        chosen = order[:n]
    else:
        by_label: dict[str, list[Item]] = {}
        for item in order:
            by_label.setdefault(item.target, []).append(item)
        chosen = []
        while len(chosen) < n and any(by_label.values()):
            for label in sorted(by_label):
                if by_label[label] and len(chosen) < n:
                    chosen.append(by_label[label].pop(0))
    if len(chosen) < n:
        raise EvalDataError(f"--few-shot {n}: {where} has only {len(chosen)} items for task '{task}'")
    return chosen
