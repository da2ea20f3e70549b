"""Every shipped recipe loads, validates and can be inspected offline (a config-hub test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moeaudio.config import REPO_RECIPES, Recipe, list_recipes, load_recipe

SHIPPED = list_recipes()


def test_recipes_are_shipped() -> None:
    assert {"quickstart", "quickstart_dense", "tiny/moe", "tiny/dense", "paper/table1_moe"} <= set(SHIPPED)
    assert len(SHIPPED) == len(list(REPO_RECIPES.rglob("*.yaml")))


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_loads_and_validates(name: str) -> None:
    r = load_recipe(name)
    assert isinstance(r, Recipe)
    assert r.name != "unnamed" and r.description
    assert load_recipe(REPO_RECIPES / f"{name}.yaml") == r  # by path, same recipe
    assert Recipe.model_validate(r.model_dump()) == r


@pytest.fixture
def offline_cache(whisper_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the offline Whisper cache at the session's converted copy (no second conversion)."""
    monkeypatch.setenv("MOEAUDIO_CACHE", str(whisper_dir.parent))


@pytest.mark.parametrize("name", SHIPPED)
def test_inspect_json_offline(name: str, offline_cache: None) -> None:
    from typer.testing import CliRunner

    from moeaudio.cli import app

    result = CliRunner().invoke(app, ["inspect", name, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the JSON object is the whole of stdout
    total, active = summary["adapter_params_total"], summary["adapter_params_active"]
    assert isinstance(total, int) and isinstance(active, int)
    assert 0 < active <= total
    recipe = load_recipe(name)
    if recipe.adapter.kind == "moe":
        assert active < total
    else:
        assert active == total
    assert summary["recipe"]["name"] == recipe.name
    assert summary["adapter_in_dim"] == recipe.audio_token_dim
    assert summary["adapter_out_dim"] == recipe.llm.hidden_size
    if recipe.encoder.name == "whisper-tiny.en-offline":
        # Whisper tiny.en encoder from its config (incl. the 1500 x 384 positional table)
        assert summary["encoder_params"] == 8_208_384
