"""Studies: one of the paper's tables or figures as a YAML file that `moeaudio reproduce` runs.

A study names its arms (a base recipe plus overrides each; one arm is the baseline), the seeds, the
columns (the paper's benchmark columns and our evaluation task for each at each scale), the figure
analyses, and the paper's own numbers to print beside ours. It is defined at two scales: ``paper``
(Whisper-large-v3 + Qwen3-1.7B, the recipes in ``recipes/paper/``) and ``cpu`` (the quickstart's
twins on the built-in synthetic corpus). The shipped studies live in ``recipes/studies/`` (shipped in
the wheel with the recipes, but not recipes: :func:`moeaudio.config.list_recipes` skips them).

Like recipes, every key is validated (``extra="forbid"``) and every cross-reference is checked when
the file is loaded: the baseline is an arm, the paper's numbers name existing columns, an analysis
names existing arms. Whether each arm's recipe resolves is checked by :meth:`Study.resolve` (and, for
every shipped study at both scales, by ``tests/test_studies.py``).

Why arms at both scales in one file: the CPU twin of an arm must be the same change as the paper arm
(``adapter.num_experts=16`` is ``adapter.num_experts=16`` at both scales); only widths that scale with
the model (expert width D/2, 2D) differ, and those are spelled out per scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moeaudio.config import STUDIES_DIR, Recipe, RecipeError, load_recipe, shipped_recipes
from moeaudio.errors import MoeaudioError
from moeaudio.runtime.budget import resolve_budget

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "SCALES",
    "Analysis",
    "Arm",
    "Column",
    "EvalSettings",
    "PerScale",
    "Scale",
    "Study",
    "StudyError",
    "list_studies",
    "load_study",
    "resolve_study_path",
]

Scale = Literal["cpu", "paper"]
SCALES: tuple[str, ...] = ("cpu", "paper")
_NAME = r"^[a-z0-9][a-z0-9_]*$"  # arm and analysis names: also folder names

#: Recipe keys every arm of a study must share at one scale: the same data, the same token budget
#: (steps x micro-batch x accumulation) and the same seed, so that only the arm's change differs.
COMPARABLE_KEYS: tuple[str, ...] = (
    "data.root",
    "data.train",
    "data.valid",
    "data.test",
    "data.tasks",
    "data.synth_seed",
    "data.synth_size",
    "data.max_audio_seconds",
    "data.micro_batch_size",
    "data.mixture",
    "train.max_steps",
    "train.stages",
    "train.grad_accum",
    "train.global_batch_size",
    "train.max_tokens",
    "train.tokens_per_example",
    "train.seed",
)
#: What the arms must also share once launched (:func:`~moeaudio.runtime.budget.resolve_budget` at each
#: arm's world size; the accumulation may differ with the world size, the examples per step may not).
BUDGET_KEYS: tuple[str, ...] = ("global_batch_size", "max_steps", "total_tokens")


class StudyError(MoeaudioError, ValueError):
    """A study file, option or run folder that cannot be used; the message says what to change."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PerScale(_Model):
    """One value per scale; None where the scale has no counterpart."""

    cpu: str | None = None
    paper: str | None = None

    def at(self, scale: str) -> str | None:
        return getattr(self, scale)


class EvalSettings(_Model):
    """`moeaudio eval` options for every column at one scale (None: the task's or recipe's default)."""

    max_items: int | None = None
    few_shot: int | None = None
    num_beams: int | None = None
    batch_size: int | None = None
    max_new_tokens: int | None = None
    shot_pool: str | None = None  # fixed shots and templates per benchmark (moeaudio.eval.shots)


class Arm(_Model):
    """One row of the table: a recipe (per scale, default the study's base) plus overrides."""

    name: str = Field(pattern=_NAME)
    label: str  # the row as the paper names it
    recipe: PerScale = Field(default_factory=PerScale)
    overrides: list[str] = Field(default_factory=list)  # both scales
    cpu_overrides: list[str] = Field(default_factory=list)
    paper_overrides: list[str] = Field(default_factory=list)
    paper: dict[str, float | str] = Field(default_factory=dict)  # column -> the paper's number
    paper_delta: dict[str, float] = Field(default_factory=dict)  # column -> paper's arm - baseline
    paper_note: str = ""  # what the paper says of this arm where it prints no number

    def scale_overrides(self, scale: str) -> list[str]:
        return list(self.cpu_overrides if scale == "cpu" else self.paper_overrides)


class Column(_Model):
    """One column: an evaluation task per scale, or the gap between two columns (audio - text)."""

    name: str  # the paper's header ("MMAU", "MMSU audio") or ours for CPU-only columns
    task: PerScale = Field(default_factory=PerScale)  # `moeaudio eval --task` at each scale
    modality: Literal["audio", "text"] = "audio"
    # default: the task's headline metric (accuracy, wer); a dotted path reads a nested one, e.g.
    # by_domain.music.accuracy (MMAU's sound / music / speech split)
    metric: str | None = None
    higher_is_better: bool = True
    percent: bool = True  # shown x100, as the paper prints accuracies
    gap: tuple[str, str] | None = None  # (column a, column b): a - b per seed (the modality gap)
    # text columns: the trained checkpoint, or the base LLM the arms start from (evaluated once per
    # study and shared by every arm; moeaudio/reproduce/base_llm.py says why the paper scale does)
    llm: Literal["trained", "base"] = "trained"
    # the benchmark's manifest per scale (default: the task's own search, moeaudio eval without --manifest)
    manifest: PerScale = Field(default_factory=PerScale)
    note: str = ""

    @model_validator(mode="after")
    def _base_is_text(self) -> Column:
        if self.llm == "base" and self.modality != "text":
            raise ValueError(f"column '{self.name}': llm: base is for text columns (modality: text)")
        return self

    @model_validator(mode="after")
    def _task_or_gap(self) -> Column:
        has_task = any(self.task.at(s) for s in SCALES)
        if has_task == (self.gap is not None):
            raise ValueError(
                f"column '{self.name}': give either task (per scale) or gap, not both or neither"
            )
        return self


class Analysis(_Model):
    """A figure: routing (per-domain expert activation) or conflict (gradient cosine and influence)."""

    name: str = Field(pattern=_NAME)  # figure file name: figures/<name>.png
    kind: Literal["routing", "conflict"]
    title: str
    arms: list[str]
    split: Literal["train", "valid", "test"] = "test"
    limit: int | None = None  # first N items of the split
    num_batches: int = 4  # conflict: single-domain batches per domain
    batch_size: int = 8
    influence: Literal["influence_normalized", "influence"] = "influence_normalized"
    # arm -> quantity (as results.md names it) -> the paper's number or words ("97-98")
    paper: dict[str, dict[str, float | str]] = Field(default_factory=dict)
    paper_note: str = ""


class Study(_Model):
    """A table or figure of the paper: arms x seeds, columns, analyses and the paper's numbers."""

    name: str = Field(pattern=_NAME)
    title: str
    description: str
    paper_source: str = ""  # where the paper's numbers below come from
    base: PerScale  # base recipe per scale; a scale with no base (and arms without one) is not offered
    overrides: dict[Scale, list[str]] = Field(default_factory=dict)  # every arm, per scale
    baseline: str
    arms: list[Arm]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    columns: list[Column] = Field(default_factory=list)
    # the one column per scale named in advance as the study's question: judged at the study's level
    # alone; every other column is corrected for multiplicity (Holm, moeaudio.reproduce.stats)
    primary: PerScale = Field(default_factory=PerScale)
    analyses: list[Analysis] = Field(default_factory=list)
    eval: dict[Scale, EvalSettings] = Field(default_factory=dict)
    minutes_per_run: dict[Scale, float] = Field(default_factory=dict)  # expected wall time per arm x seed
    equal_total_params: bool = False  # arms must have equal total adapter linear weights
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    notes: list[str] = Field(default_factory=list)  # printed under the tables

    @model_validator(mode="after")
    def _check_references(self) -> Study:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if self.baseline not in names:
            raise ValueError(f"baseline '{self.baseline}' is not an arm ({', '.join(names)})")
        columns = [c.name for c in self.columns]
        if len(set(columns)) != len(columns):
            raise ValueError(f"column names must be unique, got {columns}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        for c in self.columns:
            if c.gap is not None:
                for part in c.gap:
                    if part not in columns or self.column(part).gap is not None:
                        raise ValueError(f"column '{c.name}': gap part '{part}' is not a task column")
        for scale in SCALES:
            name = self.primary.at(scale)
            if name is None:
                continue
            if name not in columns:
                raise ValueError(f"primary.{scale}: '{name}' is not a column ({', '.join(columns)})")
            col = self.column(name)
            if col.gap is None and not col.task.at(scale):
                raise ValueError(f"primary.{scale}: column '{name}' has no task at scale '{scale}'")
        for a in self.arms:
            unknown = sorted((set(a.paper) | set(a.paper_delta)) - set(columns))
            if unknown:
                raise ValueError(f"arm '{a.name}': paper numbers for unknown columns {unknown}")
        for an in self.analyses:
            unknown = sorted(set(an.arms) - set(names))
            if unknown or not an.arms:
                raise ValueError(f"analysis '{an.name}': unknown arms {unknown} (arms: {', '.join(names)})")
            if set(an.paper) - set(an.arms):
                raise ValueError(f"analysis '{an.name}': paper numbers for arms it does not compare")
        if not self.scales:
            raise ValueError("no scale has a recipe for every arm: give base.cpu and/or base.paper")
        return self

    # --------------------------------------------------------------------------------- look-ups

    @property
    def scales(self) -> list[str]:
        """The scales this study is defined at: every arm has a recipe there."""
        return [s for s in SCALES if all(self.recipe_ref(a, s) for a in self.arms)]

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise StudyError(f"study '{self.name}' has no arm '{name}' (arms: {', '.join(self.arm_names)})")

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise StudyError(f"study '{self.name}' has no column '{name}'")

    def columns_at(self, scale: str) -> list[Column]:
        """Columns measured at ``scale``: a task there, or a gap between two such columns."""
        direct = {c.name for c in self.columns if c.gap is None and c.task.at(scale)}
        return [c for c in self.columns if c.name in direct or (c.gap and set(c.gap) <= direct)]

    def recipe_ref(self, arm: Arm, scale: str) -> str | None:
        return arm.recipe.at(scale) or self.base.at(scale)

    def arm_overrides(self, arm: Arm, scale: str) -> list[str]:
        """Study overrides at the scale, then the arm's (both scales), then the arm's at the scale."""
        return [*self.overrides.get(scale, []), *arm.overrides, *arm.scale_overrides(scale)]

    def check_scale(self, scale: str) -> None:
        if scale not in SCALES:
            raise StudyError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if scale not in self.scales:
            raise StudyError(
                f"study '{self.name}' is not defined at scale '{scale}' (it is at: {', '.join(self.scales)})"
            )

    def resolve(self, arm: Arm | str, scale: str, extra: list[str] | tuple[str, ...] = ()) -> Recipe:
        """The arm's recipe at ``scale`` with every override applied (``extra`` last)."""
        a = self.arm(arm) if isinstance(arm, str) else arm
        self.check_scale(scale)
        ref = self.recipe_ref(a, scale)
        assert ref is not None  # check_scale: every arm has one
        return load_recipe(ref, [*self.arm_overrides(a, scale), *extra])

    def seed_list(self, count: int | None = None) -> list[int]:
        """The study's seeds, or the first ``count`` (continued upwards past the listed ones)."""
        if count is None:
            return list(self.seeds)
        if count < 1:
            raise StudyError(f"--seeds must be >= 1, got {count}")
        seeds = list(self.seeds[:count])
        nxt = max(self.seeds) + 1
        while len(seeds) < count:
            seeds.append(nxt)
            nxt += 1
        return seeds

    def primary_column(self, scale: str) -> str | None:
        """The study's primary column at ``scale`` (None: every column is corrected)."""
        return self.primary.at(scale)

    def eval_settings(self, scale: str) -> EvalSettings:
        return self.eval.get(scale, EvalSettings())


def check_comparable(recipes: dict[str, Recipe], world_size: int | dict[str, int] = 1) -> None:
    """Raise :class:`StudyError` when arms differ in data, token budget or seed (:data:`COMPARABLE_KEYS`),
    or, launched on ``world_size`` ranks (one number for all, or each arm's own: the world sizes its
    runs were trained with), in the resolved global batch, accumulation, steps or tokens
    (:data:`BUDGET_KEYS`): two arms launched with different NPROC_PER_NODE and no
    ``train.global_batch_size`` would otherwise train different budgets."""

    dumped = {name: r.model_dump(mode="json") for name, r in recipes.items()}  # plain values (mixtures too)

    def get(name: str, dotted: str) -> Any:
        section, key = dotted.split(".")
        return dumped[name][section][key]

    problems = []
    for key in COMPARABLE_KEYS:
        values = {name: get(name, key) for name in recipes}
        if len({yaml.safe_dump(v) for v in values.values()}) > 1:
            problems.append(f"{key}: " + ", ".join(f"{n}={v!r}" for n, v in values.items()))
    worlds = world_size if isinstance(world_size, dict) else dict.fromkeys(recipes, world_size)
    try:
        budgets = {name: resolve_budget(r, worlds[name]).as_dict() for name, r in recipes.items()}
    except RecipeError as exc:
        raise StudyError(f"the arms' budget at world size {world_size}: {exc}") from None
    for key in BUDGET_KEYS:
        values = {name: b[key] for name, b in budgets.items()}
        if len(set(values.values())) > 1:
            problems.append(
                f"resolved {key}: "
                + ", ".join(f"{n}={v!r} (world size {worlds[n]})" for n, v in values.items())
            )
    if problems:
        raise StudyError(
            "the arms must share their data, token budget and seed; they differ in " + "; ".join(problems)
        )


# ----------------------------------------------------------------------------- loading


def _studies_root() -> Traversable:
    return shipped_recipes() / STUDIES_DIR


def list_studies() -> list[str]:
    """Names of the shipped studies (``table1``, ``table2``, ...), sorted."""
    root = _studies_root()
    if not root.is_dir():
        return []
    return sorted(c.name.removesuffix(".yaml") for c in root.iterdir() if c.name.endswith(".yaml"))


def resolve_study_path(study: str | Path) -> Path | Traversable:
    path = Path(study)
    if path.is_file():
        return path
    name = str(study).removesuffix(".yaml")
    node = _studies_root() / f"{name}.yaml"
    if "/" not in name and node.is_file():
        return node
    raise StudyError(
        f"study '{study}' not found: give a YAML path or one of the shipped studies "
        f"({', '.join(list_studies()) or 'none'})"
    )


def load_study(study: str | Path) -> Study:
    """Load and validate a study (shipped name or YAML path); raise :class:`StudyError` naming the fault."""
    path = resolve_study_path(study)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study must be a YAML mapping")
    try:
        return Study.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {where + ': ' if where else ''}{msg}")
        raise StudyError("\n".join(lines)) from None
