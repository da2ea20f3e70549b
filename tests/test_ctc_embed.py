"""The ctc_embed objective: distance logits against the LLM's embeddings, CTC over response tokens."""

from __future__ import annotations

import math

import pytest
import torch

from moeaudio.config import load_recipe
from moeaudio.model.audio_llm import IGNORE, build_audio_llm
from moeaudio.model.ctc_embed import EmbeddingCTCHead, ctc_embed_loss, ctc_greedy_decode, ctc_targets


def _hand_ctc(logp: list[list[float]], target: list[int], blank: int = 0) -> float:
    """-log p(target | frames) by the textbook forward recursion over the blank-extended label sequence."""
    ext = [blank]
    for t in target:
        ext += [t, blank]
    n, frames = len(ext), len(logp)
    alpha = [[-math.inf] * n for _ in range(frames)]
    alpha[0][0] = logp[0][ext[0]]
    if n > 1:
        alpha[0][1] = logp[0][ext[1]]

    def lse(*xs: float) -> float:
        m = max(xs)
        return m if m == -math.inf else m + math.log(sum(math.exp(x - m) for x in xs))

    for t in range(1, frames):
        for s in range(n):
            terms = [alpha[t - 1][s]]
            if s >= 1:
                terms.append(alpha[t - 1][s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[t - 1][s - 2])
            alpha[t][s] = lse(*terms) + logp[t][ext[s]]
    return -lse(alpha[-1][-1], alpha[-1][-2] if n > 1 else -math.inf)


def test_ctc_embed_loss_equals_hand_built_ctc_over_distance_logits():
    torch.manual_seed(0)
    vocab, d = 5, 3
    embeddings = torch.randn(vocab, d) * 0.5
    head = EmbeddingCTCHead(d, init_scale=1.7)
    with torch.no_grad():
        head.blank.copy_(torch.randn(d) * 0.3)
    lengths = torch.tensor([6, 4])
    y = torch.randn(int(lengths.sum()), d)
    targets = [torch.tensor([2, 2, 4]), torch.tensor([0, 3])]  # a repeated token needs a blank between
    loss = ctc_embed_loss(head, y, lengths, targets, embeddings)

    scale = 1.7
    table = torch.cat([head.blank.detach()[None], embeddings])  # class 0 blank, token v -> v + 1
    expected = []
    start = 0
    for n, target in zip(lengths.tolist(), targets, strict=True):
        frames = []
        for t in range(start, start + n):
            # -|y - e|^2 + |y|^2, the distance logit, computed entry by entry
            logits = [scale * (float(y[t] @ y[t]) - float(((y[t] - row) ** 2).sum())) for row in table]
            m = max(logits)
            z = m + math.log(sum(math.exp(v - m) for v in logits))
            frames.append([v - z for v in logits])
        expected.append(_hand_ctc(frames, [int(v) + 1 for v in target]) / len(target))
        start += n
    assert float(loss.detach()) == pytest.approx(sum(expected) / len(expected), rel=1e-5)


def test_ctc_embed_gradients_equal_plain_autograd_through_a_padded_table():
    """The loss scores the blank apart and pads with one masked write (for speed); its gradients for
    the audio tokens, the blank and the temperature equal those of the plain formulation: a (V + 1, d)
    table, pad_sequence, ctc_loss. And the cached |e_v|^2 follows the embeddings when they change."""
    torch.manual_seed(1)
    vocab, d = 7, 4
    embeddings = torch.randn(vocab, d)
    lengths = torch.tensor([5, 9, 3])
    targets = [torch.tensor([1, 1, 6]), torch.tensor([0, 2, 3, 4]), torch.tensor([5])]
    y0 = torch.randn(int(lengths.sum()), d)

    def grads(plain: bool) -> list[torch.Tensor]:
        head = EmbeddingCTCHead(d, init_scale=0.8)
        with torch.no_grad():
            head.blank.copy_(torch.linspace(-0.5, 0.5, d))
        y = y0.clone().requires_grad_()
        if plain:
            table = torch.cat([head.blank[None], embeddings])
            logp = (head.log_scale.exp() * (2 * y @ table.T - (table**2).sum(-1))).log_softmax(-1)
            padded = torch.nn.utils.rnn.pad_sequence(list(torch.split(logp, lengths.tolist())))
            loss = torch.nn.functional.ctc_loss(
                padded,
                torch.cat(targets) + 1,
                lengths,
                torch.tensor([len(t) for t in targets]),
                zero_infinity=True,
            )
        else:
            loss = ctc_embed_loss(head, y, lengths, targets, embeddings)
        loss.backward()
        return [loss.detach(), y.grad, head.blank.grad, head.log_scale.grad]

    for got, want in zip(grads(plain=False), grads(plain=True), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    head = EmbeddingCTCHead(d)
    before = head.logits(y0, embeddings)
    with torch.no_grad():
        embeddings.mul_(2.0)  # an in-place change: same storage, new version
    expected = 2 * y0 @ embeddings.T - (embeddings**2).sum(-1)
    torch.testing.assert_close(head.logits(y0, embeddings)[:, 1:], expected)
    assert not torch.allclose(before[:, 1:], expected)


def test_ctc_embed_loss_is_zero_not_inf_for_a_clip_too_short_and_decodes_its_best_path():
    head = EmbeddingCTCHead(2)
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 3.0]])  # token 0, 0, blank-ish, token 1
    loss = ctc_embed_loss(
        head, y, torch.tensor([1, 3]), [torch.tensor([0, 1, 0]), torch.tensor([0, 1])], embeddings
    )
    assert torch.isfinite(loss)
    assert ctc_greedy_decode(head, y, torch.tensor([4]), embeddings) == [[0, 1]]


def test_ctc_targets_keep_the_response_without_special_tokens():
    labels = torch.tensor([[IGNORE, IGNORE, 7, 8, 2], [IGNORE, 9, 2, IGNORE, IGNORE]])
    assert [t.tolist() for t in ctc_targets(labels, IGNORE, [2])] == [[7, 8], [9]]


def _staged_tiny(objective: str = "ctc_embed"):
    raw = load_recipe("recipes/tiny/moe.yaml").model_dump(mode="json")
    raw["train"]["stages"] = [
        {"name": "align", "objective": "ctc_embed", "trainable": ["adapter"], "max_steps": 2},
        {"name": "tune", "objective": "ntp", "max_steps": 2},
    ]
    raw["train"]["active_stage"] = 0 if objective == "ctc_embed" else 1
    raw["adapter"]["output_gain"] = "llm_embeddings"
    return load_recipe(raw)


def test_a_ctc_embed_stage_trains_the_adapter_and_head_only_and_starts_at_the_embeddings_scale():
    model = build_audio_llm(_staged_tiny("ctc_embed"))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"adapter", "ctc_head"}
    rms = model.llm.get_input_embeddings().weight.pow(2).mean().sqrt()
    assert torch.allclose(model.adapter.norm_out.weight, rms.expand_as(model.adapter.norm_out.weight))
    tuned = build_audio_llm(_staged_tiny("ntp"))
    names = {n.split(".")[0] for n, p in tuned.named_parameters() if p.requires_grad}
    assert "ctc_head" not in names and {"adapter", "llm"} <= names  # the tiny LLM is not frozen


def test_an_ntp_stage_with_ctc_weight_adds_the_ctc_of_its_transcription_rows_only(tiny_corpus, tmp_path):
    from conftest import tiny_recipe

    from moeaudio.data.manifest import read_manifest
    from moeaudio.runtime.batching import Collator
    from moeaudio.runtime.examples import load_examples, manifest_path

    raw = tiny_recipe(tiny_corpus, tmp_path).model_dump(mode="json")
    raw["train"]["stages"] = [
        {"name": "align", "objective": "ctc_embed", "trainable": ["adapter"], "max_steps": 2},
        {"name": "tune", "objective": "ntp", "max_steps": 2, "ctc_weight": 0.5},
    ]
    raw["train"]["active_stage"] = 1
    recipe = load_recipe(raw)
    torch.manual_seed(0)
    model = build_audio_llm(recipe).eval()
    manifest = manifest_path(recipe, "train")
    items = read_manifest(manifest)
    asr = [i for i in items if i.task == "asr"][:2]
    other = [i for i in items if i.task != "asr"][:2]
    examples = load_examples(
        model, manifest, recipe, progress=False, items=[asr[0], other[0], asr[1], other[1]]
    )
    batch = Collator(model)(examples)
    out = model(batch)

    # by hand: the adapter outputs of rows 0 and 2 (the transcriptions), CTC over their response tokens
    y, lengths, _ = model.adapt(model.encoder_states(batch), batch.frame_lengths)
    per_clip = torch.split(y, lengths.tolist())
    targets = ctc_targets(batch.labels[[0, 2]], IGNORE, model.tokenizer.all_special_ids)
    embeddings = model.llm.get_input_embeddings().weight
    want = ctc_embed_loss(
        model.ctc_head, torch.cat([per_clip[0], per_clip[2]]), lengths[[0, 2]], targets, embeddings
    )
    assert float(out["ctc_loss"]) == pytest.approx(float(want.detach()), rel=1e-5)
    model.recipe.train.stages[1].ctc_weight = 0.0
    plain = model(batch)
    assert "ctc_loss" not in plain
    assert float(out["loss"].detach()) == pytest.approx(
        float(plain["loss"].detach()) + 0.5 * float(want.detach()), rel=1e-5
    )
