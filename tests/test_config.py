"""Recipe schema: YAML + dotted overrides, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moeaudio.config import Recipe, RecipeError, load_recipe


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_and_dotted_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "t", "adapter": {"kind": "moe", "num_experts": 8, "top_k": 4}})
    r = load_recipe(path, ["adapter.top_k=2", "train.betas=[0.8, 0.99]", "data.tasks=[asr, aqa]"])
    assert isinstance(r, Recipe)
    assert r.name == "t"
    assert (r.adapter.num_experts, r.adapter.top_k) == (8, 2)
    assert r.train.betas == (0.8, 0.99)
    assert r.data.tasks == ["asr", "aqa"]
    # Untouched keys keep their defaults; values are parsed as YAML scalars.
    r = load_recipe(path, ["encoder.projection_dim=null", "train.lr=3e-4", "llm.freeze=true"])
    assert r.encoder.projection_dim is None
    assert r.train.lr == pytest.approx(3e-4)
    assert r.llm.freeze is True


def test_shipped_name_resolves_and_dict_input_is_not_mutated() -> None:
    r = load_recipe("tiny/moe", ["adapter.top_k=1"])
    assert r.name == "tiny-moe" and r.adapter.top_k == 1
    raw = {"adapter": {"top_k": 2}}
    assert load_recipe(raw, ["adapter.top_k=1"]).adapter.top_k == 1
    assert raw == {"adapter": {"top_k": 2}}  # the caller's dict is left alone


def test_unknown_key_in_yaml_names_it_and_the_nearest(tmp_path: Path) -> None:
    path = _write(tmp_path, {"adapter": {"topk": 2}})
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert "unknown key 'adapter.topk'" in msg
    assert "did you mean 'adapter.top_k'" in msg
    assert str(path) in msg

    with pytest.raises(RecipeError, match=r"unknown key 'adaptr'.*did you mean 'adapter'"):
        load_recipe({"adaptr": {"top_k": 2}})


def test_unknown_key_in_override_names_it_and_the_nearest() -> None:
    with pytest.raises(RecipeError) as exc:
        load_recipe("tiny/moe", ["adapter.num_expert=4"])
    msg = str(exc.value)
    assert "adapter.num_expert=4" in msg  # the override as typed
    assert "unknown key 'adapter.num_expert'" in msg
    assert "did you mean 'adapter.num_experts'" in msg

    with pytest.raises(RecipeError, match=r"unknown key 'adaptr'.*did you mean 'adapter'"):
        load_recipe("tiny/moe", ["adaptr.top_k=2"])
    with pytest.raises(RecipeError, match="section.key=value"):
        load_recipe("tiny/moe", ["adapter.top_k"])


@pytest.mark.parametrize(
    ("override", "path", "expected"),
    [
        ("adapter.top_k=abc", "adapter.top_k", "valid integer"),
        ("data.micro_batch_size=1.5", "data.micro_batch_size", "valid integer"),
        ("llm.freeze=maybe", "llm.freeze", "valid boolean"),
        ("adapter.kind=sparse", "adapter.kind", "'linear', 'mlp', 'dense' or 'moe'"),
        ("llm.tiny=5", "llm.tiny", "valid dictionary"),
    ],
)
def test_wrong_type_names_path_and_expected_type(override: str, path: str, expected: str) -> None:
    with pytest.raises(RecipeError) as exc:
        load_recipe("tiny/moe", [override])
    msg = str(exc.value)
    assert f"key '{path}'" in msg
    assert expected in msg


def test_free_form_dict_keys() -> None:
    r = load_recipe(
        "tiny/moe",
        ["llm.tiny.num_hidden_layers=1", "encoder.tiny.encoder_layers=1", "train.lr_multipliers.router=0.1"],
    )
    assert r.llm.tiny["num_hidden_layers"] == 1
    assert r.llm.tiny["intermediate_size"] == 128  # the recipe's other tiny keys survive
    assert r.encoder.tiny == {"init_std": 0.1, "encoder_layers": 1}
    assert r.train.lr_multipliers == {"router": 0.1}
    # Free-form in YAML too: any key inside llm.tiny is accepted.
    assert load_recipe({"llm": {"tiny": {"anything_at_all": 3}}}).llm.tiny == {"anything_at_all": 3}
    # ...but not below a regular key.
    with pytest.raises(RecipeError, match="'adapter.top_k' is not a section"):
        load_recipe("tiny/moe", ["adapter.top_k.x=1"])


def test_top_k_larger_than_num_experts_is_an_error() -> None:
    with pytest.raises(RecipeError, match=r"adapter.top_k=9 must be between 1 and adapter.num_experts=4"):
        load_recipe("tiny/moe", ["adapter.top_k=9"])
    with pytest.raises(RecipeError, match="adapter.top_k=0"):
        load_recipe({"adapter": {"kind": "moe", "num_experts": 8, "top_k": 0}})
    # Irrelevant for a dense adapter.
    assert load_recipe({"adapter": {"kind": "dense", "num_experts": 2, "top_k": 4}}).adapter.kind == "dense"


def test_missing_recipe_lists_the_shipped_ones() -> None:
    with pytest.raises(RecipeError, match=r"not found.*tiny/moe"):
        load_recipe("no/such/recipe")


@pytest.mark.parametrize("overrides", [[], ["adapter.top_k=1", "llm.tiny.num_hidden_layers=1"]])
def test_recipes_show_round_trip(tmp_path: Path, overrides: list[str]) -> None:
    from typer.testing import CliRunner

    from moeaudio.cli import app

    result = CliRunner().invoke(app, ["recipes", "show", "tiny/moe", *overrides])
    assert result.exit_code == 0, result.output
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout)
    expected = load_recipe("tiny/moe", overrides)
    assert load_recipe(shown) == expected
    assert load_recipe(shown).to_yaml() == expected.to_yaml()


def test_recipes_show_reports_bad_override() -> None:
    from typer.testing import CliRunner

    from moeaudio.cli import app

    result = CliRunner().invoke(app, ["recipes", "show", "tiny/moe", "adapter.topk=2"])
    assert result.exit_code == 2
    assert "adapter.top_k" in result.stderr


def test_override_none_means_none_not_a_string() -> None:
    from moeaudio.config import parse_override

    for text in ("data.feature_cache=None", "data.feature_cache=null", "data.feature_cache="):
        assert parse_override(text) == (["data", "feature_cache"], None)
    assert parse_override("data.feature_cache='None'") == (["data", "feature_cache"], "None")
