"""End-to-end tests of `moeaudio analyze-routing` / `analyze-conflict` and ``moeaudio.analyze.measure``.

Routing is checked against a model whose router was set by hand, so the expected expert ids,
gates and activation matrix follow from the construction (see ``_sign_routed_model``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_recipe
from typer.testing import CliRunner

from moeaudio.analyze import measure as analyze
from moeaudio.cli import app
from moeaudio.errors import NoRouterError
from moeaudio.runtime.batching import Example
from moeaudio.runtime.checkpoint import load_model
from moeaudio.runtime.examples import load_manifest_examples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALPHA = torch.tensor([3.0, 1.0, -1.0, -3.0])  # router logit of each expert for a "+" token
G_TOP = 1 / (1 + math.exp(-2.0))  # softmax([3, 1])[0]: gate of the first chosen expert
runner = CliRunner()


def _is_png(path: Path) -> bool:
    data = Path(path).read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------------------------------------
# hand-set routing, through the model's audio path
# ------------------------------------------------------------------------------------------------

V = torch.tensor([1.0, -1.0] * 32)  # encoder-width pattern with mean 0 and variance 1


@pytest.fixture(scope="module")
def sign_model(tmp_path_factory: pytest.TempPathFactory):
    """Tiny MoE (4 experts, top-2) whose router sends a "+" token to experts (0, 1) and a "-" token
    to (3, 2), both with gates (G_TOP, 1 - G_TOP).

    An audio token is the concatenation of two encoder frames. Frames ``s * V`` make the token
    ``s * [V, V]``, which the adapter's input LayerNorm maps to ``sign(s) * u`` with ``u = [V, V]``
    (mean 0, variance 1). Router rows ``W_g[e] = ALPHA[e] * u / 128`` then give logits
    ``sign(s) * ALPHA``: top-2 of (3, 1, -1, -3) is (0, 1), of (-3, -1, 1, 3) is (3, 2).
    """
    from moeaudio.model.audio_llm import build_audio_llm

    tmp = tmp_path_factory.mktemp("sign_model")
    model = build_audio_llm(tiny_recipe(tmp, tmp / "run", "moe")).eval()
    u = torch.cat([V, V])
    assert model.adapter.d_in == u.numel() == 128
    with torch.no_grad():
        model.adapter.norm_in.weight.fill_(1.0)
        model.adapter.norm_in.bias.zero_()
        model.adapter.moe.router.W_g.weight.copy_(ALPHA[:, None] * u[None] / u.numel())
    return model


def _states(signs: list[int]) -> torch.Tensor:
    """Encoder states for tokens of the given signs (two frames per token, stack=2)."""
    return torch.stack([10.0 * s * V for s in signs for _ in range(2)])  # (frames, 64)


def _example(signs: list[int], domain: str) -> Example:
    return Example("Describe.", "ok", states=_states(signs), meta={"domain": domain, "task": f"t-{domain}"})


def test_per_token_routing_follows_hand_set_router(sign_model):
    signs = [1, 1, -1, 1, -1]
    routed = analyze.route_examples(sign_model, [_example(signs, "speech")])[0]
    data = routed.to_json()
    assert data["frame_seconds"] == pytest.approx(2 / 50)
    assert len(data["tokens"]) == len(signs)
    for t, (tok, s) in enumerate(zip(data["tokens"], signs, strict=True)):
        assert tok["experts"] == ([0, 1] if s > 0 else [3, 2])
        assert tok["gates"] == pytest.approx([G_TOP, 1 - G_TOP], abs=1e-5)
        assert tok["time"] == pytest.approx(t * 0.04)
        assert tok["probs"] == pytest.approx(torch.softmax(s * ALPHA, 0).tolist(), abs=1e-5)


def test_activation_matrix_follows_hand_set_router(sign_model):
    # Different lengths in one batch: padding must not leak into the statistics.
    examples = [
        _example([1, 1], "speech"),
        _example([-1, -1, -1, -1], "music"),
        _example([1, -1, 1, -1], "sound"),
        _example([1, 1], "speech"),
    ]
    st = analyze.routing_report(sign_model, examples, by="domain", batch_size=3)
    assert st.groups == ["speech", "sound", "music"]
    assert st.activation["speech"] == pytest.approx([1, 1, 0, 0])
    assert st.activation["music"] == pytest.approx([0, 0, 1, 1])
    assert st.activation["sound"] == pytest.approx([0.5] * 4)
    assert st.load == pytest.approx([0.25] * 4)
    assert st.maxvio == pytest.approx(0.0)
    # I(E; G) = H(E) - H(E|G) = ln 4 - (ln 2 + ln 2 + ln 4) / 3 = (2/3) ln 2
    assert st.mutual_information == pytest.approx(2 / 3 * math.log(2), abs=1e-9)
    by_task = analyze.routing_report(sign_model, examples, by="task")
    assert by_task.activation["t-music"] == pytest.approx([0, 0, 1, 1])


def test_dense_model_has_no_router(tiny_dense_checkpoint):
    model = load_model(tiny_dense_checkpoint)
    with pytest.raises(NoRouterError, match="no router"):
        analyze.route_examples(model, [Example("x", None, wave=np.zeros(1600, np.float32))])


# ------------------------------------------------------------------------------------------------
# CLI, analyze-routing
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def constant_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` with the router fixed: every token -> experts (0, 1), gates (G_TOP, 1-G_TOP).

    The input LayerNorm gets weight 0 and bias e_0, so z = e_0 for every token whatever the audio,
    and the router's column 0 is ALPHA: logits = ALPHA for every token.
    """
    from safetensors.torch import save_file

    from moeaudio.runtime.checkpoint import WEIGHTS

    out = tmp_path_factory.mktemp("constant") / tiny_checkpoint.name
    shutil.copytree(tiny_checkpoint, out, ignore=shutil.ignore_patterns("deepspeed"))
    model = load_model(out)
    with torch.no_grad():
        model.adapter.norm_in.weight.zero_()
        model.adapter.norm_in.bias.zero_()
        model.adapter.norm_in.bias[0] = 1.0
        model.adapter.moe.router.W_g.weight.zero_()
        model.adapter.moe.router.W_g.weight[:, 0] = ALPHA
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))
    return out


def _manifest(corpus: Path) -> Path:
    return corpus / "valid.jsonl"


def _first_audio(corpus: Path, domain: str = "speech") -> Path:
    for line in _manifest(corpus).read_text().splitlines():
        item = json.loads(line)
        if item["domain"] == domain:
            return corpus / item["audio"]
    raise AssertionError(domain)


def test_cli_audio_json_png_and_timeline(constant_checkpoint, tiny_corpus, tmp_path):
    from moeaudio.data.audio import load_audio

    audio = _first_audio(tiny_corpus)
    png = tmp_path / "timeline.png"
    data = _json(
        _invoke("analyze-routing", audio, "--checkpoint", constant_checkpoint, "--json", "--png", png)
    )
    model = load_model(constant_checkpoint)
    n_tokens = model.num_audio_tokens(len(load_audio(audio, model.encoder.sample_rate)))
    assert data["num_tokens"] == len(data["tokens"]) == n_tokens > 0
    assert data["top_k"] == 2 and data["num_experts"] == 4
    for t, tok in enumerate(data["tokens"]):
        assert tok["experts"] == [0, 1]
        assert tok["gates"] == pytest.approx([G_TOP, 1 - G_TOP], abs=1e-5)
        assert tok["time"] == pytest.approx(t * data["frame_seconds"])
        assert sum(tok["probs"]) == pytest.approx(1.0, abs=1e-5)
    assert _is_png(png)
    text = _invoke("analyze-routing", audio, "--checkpoint", constant_checkpoint)
    assert text.exit_code == 0, text.output
    assert "routing timeline" in text.stdout and f"{n_tokens} tokens" in text.stdout


def test_cli_manifest_matrix_matches_hand_set_router(constant_checkpoint, tiny_corpus):
    data = _json(
        _invoke(
            "analyze-routing",
            "--manifest",
            _manifest(tiny_corpus),
            "--checkpoint",
            constant_checkpoint,
            "--json",
        )
    )
    assert set(data["activation"]) == {"speech", "sound", "music", "mixed"}
    for row in data["activation"].values():
        assert row == pytest.approx([1, 1, 0, 0])
    assert data["load"] == pytest.approx([0.5, 0.5, 0, 0])
    assert data["maxvio"] == pytest.approx(1.0)
    assert data["mutual_information"] == pytest.approx(0.0, abs=1e-12)


def test_cli_manifest_trained_and_side_by_side(tiny_checkpoint, constant_checkpoint, tiny_corpus, tmp_path):
    manifest = _manifest(tiny_corpus)
    png = tmp_path / "activation.png"
    one = _json(
        _invoke(
            "analyze-routing", "--manifest", manifest, "--checkpoint", tiny_checkpoint, "--json", "--png", png
        )
    )
    assert _is_png(png)
    for key in ("activation", "load", "maxvio", "entropy", "mutual_information"):
        assert key in one
    for row in one["activation"].values():
        assert len(row) == 4 and sum(row) == pytest.approx(2.0)  # top-2: a row sums to k
        assert all(0.0 <= v <= 1.0 for v in row)
    assert sum(one["load"]) == pytest.approx(1.0)
    assert 0.0 <= one["entropy"] <= math.log(4) + 1e-9

    png2 = tmp_path / "side_by_side.png"
    both = _json(
        _invoke(
            "analyze-routing", "--manifest", manifest, "--checkpoint", tiny_checkpoint,
            "--checkpoint", constant_checkpoint, "--json", "--png", png2, "--batch-size", "7",
        )
    )  # fmt: skip
    assert list(both) == ["tiny-moe", "tiny-moe#2"]  # same recipe name: made unique
    for g, row in one["activation"].items():  # batching-independent
        assert both["tiny-moe"]["activation"][g] == pytest.approx(row)
    assert both["tiny-moe#2"]["load"] == pytest.approx([0.5, 0.5, 0, 0])
    assert _is_png(png2)
    text = _invoke(
        "analyze-routing",
        "--manifest",
        manifest,
        "--checkpoint",
        tiny_checkpoint,
        "--by",
        "task",
        "--limit",
        "12",
    )
    assert text.exit_code == 0, text.output
    assert "MaxVio" in text.stdout and "asr" in text.stdout


def test_cli_routing_errors(tiny_dense_checkpoint, tiny_corpus):
    dense = _invoke("analyze-routing", _first_audio(tiny_corpus), "--checkpoint", tiny_dense_checkpoint)
    assert dense.exit_code == 2 and "no router" in dense.output
    dense = _invoke(
        "analyze-routing", "--manifest", _manifest(tiny_corpus), "--checkpoint", tiny_dense_checkpoint
    )
    assert dense.exit_code == 2 and "no router" in dense.output
    assert _invoke("analyze-routing").exit_code == 2
    assert _invoke("analyze-routing", "--manifest", _manifest(tiny_corpus), "--by", "speaker").exit_code == 2


# ------------------------------------------------------------------------------------------------
# gradient conflict
# ------------------------------------------------------------------------------------------------


def _check_matrices(res: dict) -> None:
    doms = res["domains"]
    assert doms == ["speech", "sound", "music"]
    for a in doms:
        assert res["cosine"][a][a] == pytest.approx(1.0, abs=1e-9)
        for b in doms:
            assert res["cosine"][a][b] == pytest.approx(res["cosine"][b][a], abs=1e-12)
            assert -1.0 - 1e-9 <= res["cosine"][a][b] <= 1.0 + 1e-9
            assert res["influence"][a][b] == pytest.approx(res["influence"][b][a], rel=1e-9, abs=1e-30)
    assert res["num_batches"] == {d: 2 for d in doms}
    assert set(res["spread"]) == {"cross", "within"}
    assert res["loss_key"] == "lm_loss"


def test_cli_conflict_dense_and_moe(tiny_checkpoint, tiny_dense_checkpoint, tiny_corpus, tmp_path):
    png = tmp_path / "conflict.png"
    args = ["--manifest", _manifest(tiny_corpus), "--batches", "2", "--batch-size", "2"]
    data = _json(
        _invoke("analyze-conflict", *args, "--checkpoint", tiny_dense_checkpoint,
                "--checkpoint", tiny_checkpoint, "--json", "--png", png, "--lr", "0.5")
    )  # fmt: skip
    assert list(data) == ["tiny-dense", "tiny-moe"]
    assert data["tiny-dense"]["adapter"] == "dense" and data["tiny-moe"]["adapter"] == "moe"
    for res in data.values():
        _check_matrices(res)
        assert res["lr"] == 0.5
    assert _is_png(png)
    one = _json(_invoke("analyze-conflict", *args, "--checkpoint", tiny_checkpoint, "--json"))
    _check_matrices(one)  # one checkpoint: keys at top level
    for a, row in one["cosine"].items():  # deterministic by seed
        assert row == pytest.approx(data["tiny-moe"]["cosine"][a])
    text = _invoke("analyze-conflict", *args, "--checkpoint", tiny_checkpoint)
    assert text.exit_code == 0, text.output
    assert "cosine" in text.stdout and "spread" in text.stdout


def test_conflict_probe_known_cosines(tiny_checkpoint, tiny_corpus):
    """Same batches under two names: cosine exactly 1 and equal influence; the probe leaves no trace."""
    model = load_model(tiny_checkpoint)
    examples = load_manifest_examples(model, _manifest(tiny_corpus))
    by_domain = analyze.domain_examples(examples)
    assert list(by_domain) == ["speech", "sound", "music"]  # mixed skipped
    probe = {"a": by_domain["speech"], "b": list(by_domain["speech"]), "c": by_domain["music"]}
    model.train()
    res = analyze.conflict_probe(model, probe, num_batches=2, batch_size=2, seed=3, lr=1.0)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # .grad untouched (autograd.grad)
    assert res["cosine"]["a"]["b"] == pytest.approx(1.0, abs=1e-6)
    assert res["influence"]["a"]["b"] == pytest.approx(res["influence"]["a"]["a"], rel=1e-6)
    assert res["influence"]["a"]["c"] == pytest.approx(res["influence"]["b"]["c"], rel=1e-6)
    assert res["cosine"]["a"]["c"] < 1.0 - 1e-4
    assert res["influence"]["a"]["a"] == pytest.approx(res["grad_norm"]["a"] ** 2, rel=1e-6)  # lr = 1
    # deterministic by seed; a different seed draws other batches
    again = analyze.conflict_probe(model, probe, num_batches=2, batch_size=2, seed=3, lr=1.0)
    assert again["cosine"] == res["cosine"]
    other = analyze.conflict_probe(model, probe, num_batches=2, batch_size=2, seed=4, lr=1.0)
    assert other["cosine"]["a"]["c"] != res["cosine"]["a"]["c"]
    # the training loss (with the balance loss) is an option, and exact influence matches to first order
    aux = analyze.conflict_probe(
        model, {"a": by_domain["speech"]}, num_batches=1, batch_size=2, include_aux=True, exact=True, lr=1.0
    )
    assert aux["loss_key"] == "loss"
    assert aux["influence_exact"]["a"]["a"] == pytest.approx(aux["influence"]["a"]["a"], rel=0.3)


def test_sample_domain_batches_is_deterministic_and_independent():
    exs = {d: [Example("x", f"{d}{i}") for i in range(5)] for d in ("speech", "music")}
    a = analyze.sample_domain_batches(exs, 3, 2, seed=1)
    b = analyze.sample_domain_batches({"speech": exs["speech"]}, 3, 2, seed=1)
    assert [[e.target for e in batch] for batch in a["speech"]] == [
        [e.target for e in batch] for batch in b["speech"]
    ]
    first_five = [e.target for batch in a["speech"] for e in batch][:5]
    assert sorted(first_five) == [f"speech{i}" for i in range(5)]  # no repeats before wrapping
