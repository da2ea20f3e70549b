"""The audio LLM: which parts learn, how prompts are built, the loss, and an overfit check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moeaudio.config import Recipe, load_recipe
from moeaudio.model.audio_llm import IGNORE, AudioLLM
from moeaudio.model.encoder import AudioEncoder, build_encoder
from moeaudio.model.llm import build_llm, build_tokenizer
from moeaudio.runtime.batching import Collator, Example

SR = 16000
# Random tiny Whisper at its default init (std 0.02) gives states dominated by the positional table
# (clips differ by ~1% of their scale); a larger init makes the clips tell apart quickly.
BASE = ["data.synth_if_missing=false", "encoder.tiny.init_std=0.1"]
TARGETS = [
    "red apple",
    "blue sky over the hills",
    "green grass",
    "seven cats",
    "a loud siren",
    "the quick brown fox",
    "soft rain",
    "piano music",
]


def _clip(i: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    tone = np.sin(2 * np.pi * 150 * (i + 1) * t) * (1 + 0.5 * np.sin(2 * np.pi * (i + 1) * t))
    return (0.4 * tone).astype(np.float32)


def _recipe(*overrides: str) -> Recipe:
    return load_recipe("tiny/moe", [*BASE, *overrides])


@pytest.fixture(scope="module")
def parts() -> tuple[AudioEncoder, object]:
    recipe = _recipe()
    return build_encoder(recipe.encoder, seed=0), build_tokenizer(recipe.llm)


def _model(parts, *overrides: str) -> AudioLLM:
    """An AudioLLM for the recipe + overrides, sharing the (stateless here) encoder and tokenizer."""
    encoder, tok = parts
    recipe = _recipe(*overrides)
    llm = build_llm(recipe.llm, len(tok), seed=0)
    torch.manual_seed(1)
    return AudioLLM(recipe, encoder, llm, tok)


def _examples(n: int = 3) -> list[Example]:
    durations = [1.0, 0.5, 0.74, 1.3, 0.62, 0.9, 1.1, 0.8]
    return [Example("Describe the audio.", TARGETS[i], wave=_clip(i, durations[i])) for i in range(n)]


def _grad_names(model: AudioLLM) -> dict[str, set[str]]:
    """Backward once; the names (per part) of the parameters that received a gradient."""
    model.zero_grad(set_to_none=True)
    model.train()
    batch = Collator(model)(_examples())
    model(batch)["loss"].backward()
    got: dict[str, set[str]] = {"encoder": set(), "stacker": set(), "adapter": set(), "llm": set()}
    for name, p in model.named_parameters():
        if p.grad is not None:
            part, rest = name.split(".", 1)
            got[part].add(rest)
    return got


def _names(module: torch.nn.Module, keep=lambda n: True) -> set[str]:
    return {n for n, _ in module.named_parameters() if keep(n)}


# ------------------------------------------------------------------ (a) what learns


def test_frozen_encoder_and_llm_only_adapter_and_projection_learn(parts) -> None:
    model = _model(parts, "llm.freeze=true", "encoder.projection_dim=32")
    got = _grad_names(model)
    assert got["encoder"] == set() and got["llm"] == set()
    assert got["stacker"] == _names(model.stacker) != set()  # LN -> Linear -> SiLU -> LN projection
    assert got["adapter"] == _names(model.adapter)  # every expert is used by some token here
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f"{part}.{n}" for part in ("stacker", "adapter") for n in got[part]
    }


def test_trainable_llm_learns_too(parts) -> None:
    model = _model(parts)  # tiny/moe: llm.freeze=false
    got = _grad_names(model)
    assert got["encoder"] == set()
    assert got["adapter"] == _names(model.adapter)
    assert got["llm"] == _names(model.llm)


def test_lora_only_lora_weights_of_the_llm_learn(parts) -> None:
    model = _model(parts, "llm.lora_r=4")
    got = _grad_names(model)
    assert got["encoder"] == set()
    assert got["adapter"] == _names(model.adapter)
    lora = _names(model.llm, lambda n: "lora_" in n)
    assert len(lora) == 2 * 4 * 2  # A and B of q/k/v/o in 2 layers
    assert got["llm"] == lora


def test_unfrozen_encoder_learns(parts) -> None:
    model = _model(parts, "encoder.freeze=false", "llm.freeze=true")
    try:
        got = _grad_names(model)
        assert model.encoder.training  # not forced into eval when it is trained
        # Everything but Whisper's fixed sinusoidal positional table (frozen upstream too).
        assert got["encoder"] == _names(model.encoder, lambda n: "embed_positions" not in n)
        assert not model.encoder.encoder.embed_positions.weight.requires_grad
        assert got["llm"] == set()
    finally:
        parts[0].requires_grad_(False)


# ------------------------------------------------------------------ (b), (e) prompts and padding


def test_training_batch_placeholders_labels_and_template(parts) -> None:
    model = _model(parts)
    tok = model.tokenizer
    examples = _examples(3)
    batch = Collator(model)(examples)
    n_audio = [model.num_audio_tokens(len(e.wave)) for e in examples]
    assert n_audio == [25, 13, 19]  # 50 Hz frames, stacked by 2, rounded up
    assert (batch.input_ids == model.audio_token_id).sum(1).tolist() == n_audio
    assert batch.frame_lengths.tolist() == [50, 25, 37]
    assert model.stacker.token_lengths(batch.frame_lengths).tolist() == n_audio
    for i, e in enumerate(examples):
        valid = batch.attention_mask[i].bool()
        row, labels = batch.input_ids[i][valid].tolist(), batch.labels[i][valid].tolist()
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": f"{model.recipe.llm.audio_placeholder}\n{e.instruction}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        expected_prompt = prompt.replace(model.recipe.llm.audio_placeholder, "<|audio|>" * n_audio[i])
        response = tok(e.target, add_special_tokens=False).input_ids + [tok.eos_token_id]
        assert tok.decode(row[: len(row) - len(response)]) == expected_prompt
        assert expected_prompt.startswith("<|im_start|>user\n<|audio|>")
        assert expected_prompt.endswith("Describe the audio.<|im_end|>\n<|im_start|>assistant\n")
        assert row[-len(response) :] == response
        assert tok.decode(response) == f"{e.target}<|im_end|>"
        # Loss only on the response (target + end of turn); everything else, padding included, is ignored.
        assert labels == [IGNORE] * (len(row) - len(response)) + response
        assert (batch.labels[i][~valid] == IGNORE).all()
    # The model accepts it: one adapter output per placeholder.
    with torch.no_grad():
        embeds, _ = model.embed(batch)
    assert embeds.shape == (*batch.input_ids.shape, 64)


def test_audio_after_instruction_puts_the_question_first(parts) -> None:
    """llm.audio_position=after_instruction: the user turn is the instruction, then the audio tokens."""
    model = _model(parts, "llm.audio_position=after_instruction")
    tok = model.tokenizer
    examples = _examples(2)
    batch = Collator(model)(examples)
    n_audio = [model.num_audio_tokens(len(e.wave)) for e in examples]
    for i, e in enumerate(examples):
        row = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        text = tok.decode(row)
        assert text.startswith(
            f"<|im_start|>user\n{e.instruction}\n" + "<|audio|>" * n_audio[i] + "<|im_end|>"
        )
        assert text.endswith(f"<|im_start|>assistant\n{e.target}<|im_end|>")
    with torch.no_grad():  # the placeholders are still filled one for one by the adapter
        embeds, _ = model.embed(batch)
    assert embeds.shape == (*batch.input_ids.shape, 64)


def test_training_right_padded_generation_left_padded(parts) -> None:
    model = _model(parts)
    pad = model.tokenizer.pad_token_id
    examples = _examples(3)
    train = Collator(model)(examples)
    gen = Collator(model, for_generation=True)(examples)
    lengths = train.attention_mask.sum(1)
    assert len(set(lengths.tolist())) == 3  # rows of different lengths, so padding is exercised
    # Training: right-padded (real tokens first).
    assert (train.attention_mask[:, 0] == 1).all()
    for i, n in enumerate(lengths.tolist()):
        assert train.attention_mask[i, :n].all() and not train.attention_mask[i, n:].any()
        assert (train.input_ids[i, n:] == pad).all()
    # Generation: no response, no labels, left-padded so every row ends with the assistant header.
    assert gen.labels is None
    assert (gen.attention_mask[:, -1] == 1).all()
    header = model.tokenizer("<|im_start|>assistant\n", add_special_tokens=False).input_ids
    gen_lengths = gen.attention_mask.sum(1)
    for i, n in enumerate(gen_lengths.tolist()):
        width = gen.input_ids.shape[1]
        assert not gen.attention_mask[i, : width - n].any() and gen.attention_mask[i, width - n :].all()
        assert (gen.input_ids[i, : width - n] == pad).all()
        assert gen.input_ids[i, -len(header) :].tolist() == header
        # Same prompt as the training row, minus the response.
        response = len(model.tokenizer(examples[i].target, add_special_tokens=False).input_ids) + 1
        assert n == int(lengths[i]) - response
        assert gen.input_ids[i, width - n :].tolist() == train.input_ids[i, :n].tolist()


# ------------------------------------------------------------------ (c) kept-logits loss is exact


def test_loss_with_kept_logits_equals_full_cross_entropy(parts) -> None:
    model = _model(parts).eval()
    batch = Collator(model)(_examples(3))
    with torch.no_grad():
        out = model(batch)
        embeds, losses = model.embed(batch)
        full = model.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits  # (B, S, V)
    logits, targets = full[:, :-1], batch.labels[:, 1:]  # position t predicts token t+1
    mask = targets != IGNORE
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    by_hand = -(picked * mask).sum() / mask.sum()
    torch.testing.assert_close(out["lm_loss"], by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        out["lm_loss"],
        torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets),
        atol=1e-5,
        rtol=1e-5,
    )
    # The total adds the coefficient-weighted balance loss of the MoE-Adapter.
    torch.testing.assert_close(out["loss"], out["lm_loss"] + losses["total"])
    assert losses["total"] > 0


def test_rows_run_in_length_groups_as_one_batch_would(parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backbone runs rows of similar length together, each group cut to its own longest row:
    the response states, the loss and every gradient equal one call over the padded batch."""
    import moeaudio.model.audio_llm as audio_llm
    from moeaudio.model.row_groups import row_groups

    model = _model(parts).train()
    examples = _examples(8)
    examples[2] = Example(
        "Describe the audio.", "a much longer answer than the others by far", wave=_clip(2, 0.3)
    )
    batch = Collator(model)(examples)
    groups = row_groups(batch.attention_mask.sum(1).tolist(), max_groups=4, call_cost=0.0)
    assert len(groups) > 1  # this batch does split

    grouped = audio_llm.AudioLLM.response_hidden  # the code under test

    def one_call(backbone, embeds, mask, selected):  # the plain computation, no grouping
        return backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, :-1][selected]

    def run(split: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        monkeypatch.setattr(audio_llm, "row_groups", lambda n: row_groups(n, max_groups=4, call_cost=0.0))
        monkeypatch.setattr(
            audio_llm.AudioLLM,
            "response_hidden",
            staticmethod(grouped if split else one_call),
        )
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss = model(batch)["loss"]
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    one_loss, one_grads = run(split=False)
    split_loss, split_grads = run(split=True)
    torch.testing.assert_close(split_loss, one_loss, atol=1e-6, rtol=1e-5)
    assert split_grads.keys() == one_grads.keys() and len(one_grads) > 10
    for name, grad in one_grads.items():
        torch.testing.assert_close(split_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_sample_reduction_weighs_every_example_equally(parts) -> None:
    """``train.loss_reduction=sample``: the mean over examples of each example's mean token loss,
    so a long transcript and a one-word label count the same; ``token`` stays the plain mean."""
    examples = [
        Example("Describe the audio.", "a very long answer with many many words in it", wave=_clip(0, 1.0)),
        Example("Describe the audio.", "yes", wave=_clip(1, 0.5)),
    ]
    losses = {}
    for reduction in ("token", "sample"):
        model = _model(parts, f"train.loss_reduction={reduction}").eval()
        batch = Collator(model)(examples)
        with torch.no_grad():
            losses[reduction] = model(batch)["lm_loss"]
            embeds, _ = model.embed(batch)
            logits = model.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits[:, :-1]
        targets = batch.labels[:, 1:]
        per_token = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2).float(), targets, reduction="none"
        )  # (batch, seq-1), zero where ignored
        mask = targets != IGNORE
        token_mean = per_token.sum() / mask.sum()
        sample_mean = (per_token.sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(losses["token"], token_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["sample"], sample_mean, atol=1e-5, rtol=1e-5)
    assert mask.sum(1)[0] > 4 * mask.sum(1)[1]  # the two reductions really weigh these rows differently
    assert not torch.isclose(token_mean, sample_mean, atol=1e-3)


# ------------------------------------------------------------------ (d) overfit 8 clips


def test_overfit_eight_clips_then_generate_them() -> None:
    torch.manual_seed(0)
    from moeaudio.model.audio_llm import build_audio_llm

    model = build_audio_llm(_recipe())
    # 10-13 audio tokens: rows differ in length (padding both ways) but only a little, so the
    # kept-logits span, the dominant cost with a 50k vocabulary, stays short.
    durations = [0.4 + 0.04 * (i % 4) for i in range(8)]
    waves = [_clip(i, d) for i, d in enumerate(durations)]
    with torch.no_grad():  # frozen encoder: states computed once, as the feature cache does
        inputs = model.encoder.prepare(waves)
        states = model.encoder(inputs)
    examples = [
        Example("Describe the audio.", target, states=states[i, : int(inputs.lengths[i])])
        for i, target in enumerate(TARGETS)
    ]
    batch = Collator(model)(examples)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(300):
        out = model(batch)  # NTP + the MoE balance loss
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        losses.append(out["lm_loss"].item())
        if losses[-1] < 0.03:  # ~120 steps
            break
    assert losses[-1] < 0.05, losses[::10]
    model.eval()
    gen = Collator(model, for_generation=True)(examples)
    assert (gen.attention_mask[:, 0] == 0).any()  # left padding is exercised
    assert model.generate(gen, max_new_tokens=10) == TARGETS
