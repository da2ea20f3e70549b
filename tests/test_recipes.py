"""Every shipped recipe loads, validates and can be inspected offline (a config-hub test)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from moeaudio.config import REPO_RECIPES, Recipe, list_recipes, load_recipe, shipped_recipes
from moeaudio.reproduce.study import list_studies

REPO = REPO_RECIPES.parent

SHIPPED = list_recipes()


def test_recipes_are_shipped() -> None:
    assert {"quickstart", "quickstart_dense", "tiny/moe", "tiny/dense", "paper/table1_moe"} <= set(SHIPPED)
    # every YAML under recipes/ is a recipe, except the studies (tests/test_studies.py) and their shot pools
    studies = REPO_RECIPES / "studies"
    assert len(SHIPPED) == len([p for p in REPO_RECIPES.rglob("*.yaml") if not p.is_relative_to(studies)])
    # from a checkout (installed editable or not at all) the shipped recipes are the repository's
    assert Path(str(shipped_recipes())).resolve() == REPO_RECIPES.resolve()


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


# ----------------------------------------------------------------------------- the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline with the setuptools already installed (the PEP 517 hook pip calls), from a
    copy of the sources, so a concurrent build or edit in the checkout cannot interfere (~1 s)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("moeaudio", "recipes"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    build = "import sys; from setuptools.build_meta import build_wheel; print(build_wheel(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", build, str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


def test_wheel_ships_every_recipe(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = sorted(p.relative_to(REPO_RECIPES).as_posix() for p in REPO_RECIPES.rglob("*.yaml"))
    assert recipes
    missing = [r for r in recipes if f"moeaudio/recipes/{r}" not in names]
    assert not missing, f"recipes missing from the wheel as moeaudio/recipes/...: {missing}"


def test_wheel_ships_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / "moeaudio").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    missing = [m for m in modules if m not in names]
    packages = sorted({m.rpartition("/")[0].replace("/", ".") for m in missing})
    assert not missing, (
        f"modules missing from the wheel: {missing}; add {packages} to [tool.setuptools] packages "
        "in pyproject.toml"
    )


def test_installed_wheel_finds_recipes(wheel: Path, tmp_path: Path) -> None:
    """Unpacked like pip installs it, away from the checkout: names resolve inside moeaudio.recipes."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import json, moeaudio.config as c, moeaudio.reproduce.study as s; "
        "print(json.dumps([c.__file__, str(c.shipped_recipes()), c.list_recipes(), "
        "str(c.resolve_recipe_path('tiny/moe')), c.load_recipe('paper/table1_moe').name, "
        "s.list_studies(), s.load_study('table2').name]))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    module, root, names, tiny_moe, paper_name, studies, table2 = json.loads(
        proc.stdout.strip().splitlines()[-1]
    )
    assert Path(module).is_relative_to(site), module  # the unpacked wheel's moeaudio, not the checkout's
    assert Path(root) == site / "moeaudio" / "recipes"
    assert names == SHIPPED
    assert Path(tiny_moe) == site / "moeaudio" / "recipes" / "tiny" / "moe.yaml"
    assert paper_name == load_recipe("paper/table1_moe").name
    assert studies == list_studies() and table2 == "table2"  # the studies ship beside the recipes
