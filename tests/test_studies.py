"""Every shipped study validates, and every arm resolves at every scale it offers (a study-hub test).

Beyond the schema: arms of a study share data, token budget and seed; the studies that compare
adapters of equal size have equal total adapter weights; every column's task is one `moeaudio eval`
knows; every paper-scale arm is a recipe file of its own in recipes/paper/ (the file alone is the arm:
the study's overrides change nothing in it), and that file is the study's base plus the arm's overrides.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moeaudio.config import REPO_RECIPES, list_recipes, load_recipe
from moeaudio.reproduce.study import SCALES, Study, StudyError, list_studies, load_study

STUDIES = list_studies()
SHIPPED_RECIPES = set(list_recipes())

#: Recipes another change is adding (the SmolLM2 CPU-scale twin and its dense twin) with the eval task
#: their corpus brings: a study arm may name them before they exist here; any other missing recipe fails.
PENDING_RECIPES = {"smol": "spoken_qa", "smol_dense": "spoken_qa"}


def _missing(study: Study, scale: str) -> list[str]:
    refs = {study.recipe_ref(a, scale) for a in study.arms}
    return sorted(r for r in refs if r not in SHIPPED_RECIPES and not Path(str(r)).is_file())


def _ready(study: Study, scale: str) -> None:
    missing = _missing(study, scale)
    unexpected = [r for r in missing if r not in PENDING_RECIPES]
    assert not unexpected, f"study '{study.name}' names recipes that do not exist: {unexpected}"
    if missing:
        pytest.skip(f"study '{study.name}' at scale {scale} needs recipes not in this branch yet: {missing}")


def test_studies_are_shipped() -> None:
    assert {"table1", "table1_modality", "table2", "table3", "figures"} <= set(STUDIES)
    assert len(STUDIES) == len(list((REPO_RECIPES / "studies").glob("*.yaml")))
    assert not any(name.startswith("studies/") for name in list_recipes())  # studies are not recipes


@pytest.mark.parametrize("name", STUDIES)
def test_study_validates(name: str) -> None:
    study = load_study(name)
    assert study.name == name
    assert study.title and study.description and study.paper_source
    assert study.scales, "a study must be defined at one scale at least"
    assert load_study(REPO_RECIPES / "studies" / f"{name}.yaml") == study  # by path, same study
    assert study.baseline in study.arm_names


CASES = [(name, scale) for name in STUDIES for scale in load_study(name).scales]


@pytest.mark.parametrize("name,scale", CASES)
def test_every_arm_resolves(name: str, scale: str) -> None:
    from moeaudio.eval.tasks import get_task
    from moeaudio.reproduce.plan import plan_study
    from moeaudio.reproduce.runner import check_equal_params

    study = load_study(name)
    _ready(study, scale)
    plan = plan_study(study, scale, output="runs/studies/test")  # resolves every arm x seed, same budget
    assert len(plan.runs) == len(study.arms) * len(study.seeds)
    for run in plan.runs:
        assert run.recipe.train.seed == run.seed
        assert Path(run.recipe.train.output_dir) == Path("runs/studies/test") / run.arm / f"seed-{run.seed}"
    counts = check_equal_params(plan)  # raises when equal_total_params and they differ
    if study.equal_total_params:
        assert len(set(counts.values())) == 1
    for col in study.columns_at(scale):
        if col.gap is None:
            spec = get_task(col.task.at(scale))  # raises for a task eval does not know
            if col.modality == "text":
                assert spec.kind == "mcq"  # eval --modality text is for spoken multiple choice
    if scale == "cpu":  # CPU twins: the quickstart and its dense twin (or SmolLM2's pair)
        assert {study.recipe_ref(a, scale) for a in study.arms} <= {
            "quickstart",
            "quickstart_dense",
            *PENDING_RECIPES,
        }


def _comparable(recipe) -> dict:
    data = recipe.model_dump(mode="json")
    for key in ("name", "description"):
        data.pop(key)
    data["train"].pop("output_dir")
    return data


PAPER_ARMS = [
    (name, arm.name)
    for name in STUDIES
    if "paper" in load_study(name).scales
    for arm in load_study(name).arms
]


@pytest.mark.parametrize("name,arm", PAPER_ARMS)
def test_paper_arm_is_its_own_recipe_file(name: str, arm: str) -> None:
    study = load_study(name)
    a = study.arm(arm)
    ref = study.recipe_ref(a, "paper")
    assert ref is not None and ref.startswith("paper/") and ref in SHIPPED_RECIPES
    # the file alone is the arm: running `moeaudio train recipes/<ref>.yaml` trains what the study trains
    assert _comparable(study.resolve(a, "paper")) == _comparable(load_recipe(ref))
    # and it is the study's base with the arm's change, nothing else
    if a.overrides or a.paper_overrides:
        base = load_recipe(study.base.paper, [*a.overrides, *a.paper_overrides])
        assert _comparable(base) == _comparable(load_recipe(ref))


def test_the_same_arm_has_one_paper_recipe_everywhere() -> None:
    """An arm that appears in several studies (the MoE default, no balance loss, dense) trains one file."""
    by_change: dict[tuple, set[str]] = {}
    for name in STUDIES:
        study = load_study(name)
        if "paper" not in study.scales:
            continue
        for a in study.arms:
            recipe = study.resolve(a, "paper")
            key = yaml.safe_dump(_comparable(recipe), sort_keys=True)
            by_change.setdefault((key,), set()).add(study.recipe_ref(a, "paper"))
    assert all(len(refs) == 1 for refs in by_change.values()), by_change


def test_table_numbers_are_the_papers() -> None:
    t1 = load_study("table1")
    assert t1.arm("dense").paper["MMAU"] == 59.79 and t1.arm("moe").paper["MMAU"] == 61.50
    assert t1.arm("moe").paper["OBQA audio"] == 53.85 and t1.arm("dense").paper["MMSU text"] == 52.86
    t3 = load_study("table3")
    assert t3.arm("no_balance").paper_delta == {"MMAU": 1.51, "MMSU audio": -0.82, "OBQA audio": -1.54}
    conflict = next(a for a in t1.analyses if a.kind == "conflict")
    assert conflict.paper["dense"]["cosine music-sound"] == -0.020
    assert conflict.paper["moe"]["cosine music-sound"] == 0.029
    assert len(load_study("table2").arms) == 6
    assert max(len(load_study(n).seeds) for n in ("table1", "table3")) >= 3


# ----------------------------------------------------------------------------- the schema refuses


def _write(tmp_path: Path, study: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


GOOD = {
    "name": "s",
    "title": "t",
    "description": "d",
    "base": {"cpu": "tiny/moe"},
    "baseline": "a",
    "arms": [{"name": "a", "label": "A"}, {"name": "b", "label": "B", "overrides": ["adapter.top_k=1"]}],
    "columns": [{"name": "MCQ", "task": {"cpu": "mcq"}}],
}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"baseline": "c"}, "baseline 'c' is not an arm"),
        ({"arms": [{"name": "a", "label": "A", "paper": {"MMAU": 1.0}}]}, "unknown columns ['MMAU']"),
        ({"arms": [{"name": "a", "label": "A", "overide": []}]}, "Extra inputs are not permitted"),
        ({"columns": [{"name": "g", "gap": ["MCQ", "x"]}]}, "gap part 'MCQ' is not a task column"),
        (
            {"analyses": [{"name": "r", "kind": "routing", "title": "r", "arms": ["zz"]}]},
            "unknown arms ['zz']",
        ),
        ({"base": {}}, "no scale has a recipe for every arm"),
        ({"seeds": [0, 0]}, "seeds must be distinct"),
    ],
)
def test_schema_refuses(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(StudyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(_write(tmp_path, {**GOOD, **change}))


def test_scales_seeds_and_overrides(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, GOOD))
    assert study.scales == ["cpu"] and set(SCALES) == {"cpu", "paper"}
    with pytest.raises(StudyError, match="not defined at scale 'paper'"):
        study.resolve("a", "paper")
    assert study.resolve("b", "cpu").adapter.top_k == 1
    assert (
        study.seed_list() == [0, 1, 2]
        and study.seed_list(2) == [0, 1]
        and study.seed_list(5) == [0, 1, 2, 3, 4]
    )
    with pytest.raises(StudyError, match="unknown study|not found"):
        load_study("no_such_study")


def test_arms_must_share_data_and_budget(tmp_path: Path) -> None:
    from moeaudio.reproduce.plan import plan_study

    study = load_study(
        _write(
            tmp_path,
            {
                **GOOD,
                "arms": [GOOD["arms"][0], {"name": "b", "label": "B", "overrides": ["train.max_steps=7"]}],
            },
        )
    )
    with pytest.raises(StudyError, match="train.max_steps"):
        plan_study(study, "cpu")
