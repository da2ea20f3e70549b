"""The audio LLM: encoder -> frame stacking -> adapter -> embeddings spliced into the LLM prompt.

The adapter's outputs replace the audio placeholder tokens of the prompt one for one, so the
LLM sees `<|im_start|>user\\n[audio tokens] instruction<|im_end|>\\n<|im_start|>assistant\\n`
followed by the response, and the loss is next-token prediction on the response only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from moeaudio.config import Recipe, RecipeError
from moeaudio.model.adapters import build_adapter
from moeaudio.model.ctc_embed import EmbeddingCTCHead, ctc_embed_loss, ctc_targets
from moeaudio.model.encoder import AudioEncoder, EncoderInputs, FrameStacker, build_encoder
from moeaudio.model.llm import build_llm, build_tokenizer
from moeaudio.model.row_groups import row_groups

IGNORE = -100


@dataclass
class AudioBatch:
    """One padded batch. Audio arrives either as encoder inputs or as cached encoder states."""

    input_ids: torch.Tensor  # (batch, seq) with one placeholder id per audio token
    attention_mask: torch.Tensor  # (batch, seq)
    labels: torch.Tensor | None  # (batch, seq), IGNORE outside the response
    frame_lengths: torch.Tensor  # (batch,) valid encoder frames
    encoder_inputs: EncoderInputs | None = None
    encoder_states: torch.Tensor | None = None  # (batch, frames, d_model) from the feature cache
    meta: list[dict] = field(default_factory=list)

    def to(self, device: torch.device | str) -> AudioBatch:
        def move(t):
            return t.to(device) if isinstance(t, torch.Tensor) else t

        enc = self.encoder_inputs
        if enc is not None:
            enc = EncoderInputs(
                move(enc.values), move(enc.lengths), move(enc.sample_lengths), move(enc.extra)
            )
        return AudioBatch(
            move(self.input_ids),
            move(self.attention_mask),
            move(self.labels),
            move(self.frame_lengths),
            enc,
            move(self.encoder_states),
            self.meta,
        )


class AudioLLM(nn.Module):
    """Encoder + stacker + adapter + causal LM, with the aux losses of the adapter."""

    def __init__(self, recipe: Recipe, encoder: AudioEncoder, llm: nn.Module, tokenizer):
        super().__init__()
        self.recipe = recipe
        self.encoder = encoder
        self.stacker = FrameStacker(encoder.d_model, recipe.encoder.stack, recipe.encoder.projection_dim)
        d_llm = llm.get_input_embeddings().embedding_dim
        self.adapter = build_adapter(recipe.adapter, self.stacker.out_dim, d_llm)
        init_output_gain(self.adapter, recipe.adapter.output_gain, llm.get_input_embeddings().weight)
        # the CTC head of a ctc_embed stage lives in every stage's model, so all stages share one layout
        self.ctc_head = EmbeddingCTCHead(d_llm) if recipe.has_ctc_head() else None
        self.llm = llm
        self.tokenizer = tokenizer
        self.audio_token_id = tokenizer.convert_tokens_to_ids(recipe.llm.audio_placeholder)
        self.apply_freezing()

    # ------------------------------------------------------------------ set-up
    def apply_freezing(self) -> None:
        """Freeze flags per part: the active stage's ``trainable`` where it lists one, else the
        recipe's ``freeze`` flags and ``lora_r``. The encoder is also kept in eval mode when frozen."""
        parts = set(self.recipe.trained_parts())
        self.encoder.requires_grad_("encoder" in parts)
        positions = getattr(getattr(self.encoder, "encoder", None), "embed_positions", None)
        if positions is not None:  # Whisper's sinusoidal table stays fixed, as in transformers
            positions.requires_grad_(False)
        self.adapter.requires_grad_("adapter" in parts)
        if self.ctc_head is not None:
            self.ctc_head.requires_grad_(self.objective == "ctc_embed")
        for name, p in self.llm.named_parameters():
            p.requires_grad_(("lora" if "lora_" in name else "llm") in parts)

    @property
    def objective(self) -> str:
        """The loss :meth:`forward` computes: the active stage's objective, else ``ntp``."""
        stage = self.recipe.train.stage
        return stage.objective if stage is not None else "ntp"

    def train(self, mode: bool = True) -> AudioLLM:
        super().train(mode)
        if self.recipe.encoder.freeze:
            self.encoder.eval()
        return self

    def num_audio_tokens(self, num_samples: int) -> int:
        frames = self.encoder.output_length(num_samples)
        return int(self.stacker.token_lengths(torch.tensor([frames]))[0])

    # ------------------------------------------------------------------ forward
    def encode_audio(self, batch: AudioBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Audio -> adapter outputs for every valid audio token, flattened in batch order."""
        y, _, losses = self.adapt(self.encoder_states(batch), batch.frame_lengths)
        return y, losses

    def encoder_states(self, batch: AudioBatch) -> torch.Tensor:
        """(batch, frames, d_model): the cached states if the batch has them, else the encoder's."""
        if batch.encoder_states is not None:
            return batch.encoder_states
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.recipe.encoder.freeze):
            return self.encoder(batch.encoder_inputs)

    def adapt(
        self, states: torch.Tensor, frame_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Stack and adapt encoder states: (adapter outputs of every valid token, flattened in
        batch order (valid_tokens, d_llm); tokens per clip (batch,); the adapter's aux losses)."""
        dtype = next(self.adapter.parameters()).dtype
        tokens, token_lengths = self.stacker(states.to(dtype), frame_lengths)  # (batch, tokens, d_in)
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None] < token_lengths[:, None].to(
            tokens.device
        )
        out = self.adapter(tokens[valid])  # y: (valid_tokens, d_llm)
        return out.y, token_lengths, out.losses

    def embed(self, batch: AudioBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Token embeddings with the audio placeholders replaced by adapter outputs."""
        embeds, losses, _ = self.embed_with_audio(batch)
        return embeds, losses

    def embed_with_audio(
        self, batch: AudioBatch
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
        """:meth:`embed`, plus the adapter outputs it placed (every valid audio token, flattened in batch
        order (valid_tokens, d_llm); tokens per clip (batch,)), or None for a text-only batch."""
        embeds = self.llm.get_input_embeddings()(batch.input_ids)  # (batch, seq, d_llm)
        if batch.encoder_inputs is None and batch.encoder_states is None:  # text-only batch
            return embeds, {}, None
        audio, token_lengths, losses = self.adapt(self.encoder_states(batch), batch.frame_lengths)
        slots = batch.input_ids == self.audio_token_id  # (batch, seq)
        if int(slots.sum()) != audio.shape[0]:
            raise ValueError(
                f"prompt has {int(slots.sum())} audio placeholders but the audio gives {audio.shape[0]} tokens"
            )
        embeds = embeds.masked_scatter(slots[..., None], audio.to(embeds.dtype))
        return embeds, losses, (audio, token_lengths)

    def forward(self, batch: AudioBatch) -> dict[str, torch.Tensor]:
        """Loss = NTP on the response (or ``ctc_embed`` in such a stage) + sum(coef * aux loss), plus
        the stage's ``ctc_weight`` x ``ctc_embed`` of its transcription rows. Returns every term for logging."""
        if self.objective == "ctc_embed":
            return self.ctc_forward(batch)
        embeds, losses, audio = self.embed_with_audio(batch)
        token_loss = self.response_nll(embeds, batch)  # (response_tokens,)
        lm_loss = (token_loss * self.response_weights(batch.labels[:, 1:])).sum()
        total = lm_loss + losses["total"] if "total" in losses else lm_loss  # coefficient-weighted aux terms
        logged = {k: v.detach() for k, v in losses.items() if k != "total"}
        ctc_weight = self.recipe.train.stage.ctc_weight if self.recipe.train.stage is not None else 0.0
        if ctc_weight and audio is not None:
            ctc = self.transcription_ctc(*audio, batch)
            if ctc is not None:
                total = total + ctc_weight * ctc
                logged["ctc_loss"] = ctc.detach()
        return {"loss": total, "lm_loss": lm_loss, **logged}

    def transcription_ctc(
        self, y: torch.Tensor, token_lengths: torch.Tensor, batch: AudioBatch
    ) -> torch.Tensor | None:
        """The ``ctc_embed`` loss of the batch's transcription rows (task ``asr``: their response is
        what the audio says), from the adapter outputs the next-token loss used (y: (valid_tokens,
        d_llm), token_lengths: (batch,)); None without such rows."""
        rows = [i for i, m in enumerate(batch.meta) if (m or {}).get("task") == "asr"]
        if not rows or batch.labels is None:
            return None
        per_clip = torch.split(y, token_lengths.tolist())
        return self._ctc_embed(
            torch.cat([per_clip[i] for i in rows]), token_lengths[rows], batch.labels[rows]
        )

    def ctc_forward(self, batch: AudioBatch) -> dict[str, torch.Tensor]:
        """The ``ctc_embed`` objective (:mod:`moeaudio.model.ctc_embed`): adapter outputs against the
        LLM's frozen token embeddings, CTC over the response's tokens; the LLM itself does not run."""
        if self.ctc_head is None or batch.labels is None:
            raise ValueError("ctc_embed needs a recipe with a ctc_embed stage and a training batch (labels)")
        y, token_lengths, losses = self.adapt(self.encoder_states(batch), batch.frame_lengths)
        ctc = self._ctc_embed(y, token_lengths, batch.labels)
        total = ctc + losses["total"] if "total" in losses else ctc
        logged = {k: v.detach() for k, v in losses.items() if k != "total"}
        return {"loss": total, "ctc_loss": ctc, **logged}

    def _ctc_embed(self, y: torch.Tensor, token_lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`ctc_embed_loss` of these clips' adapter outputs against their responses' tokens
        (special tokens dropped) and the LLM's token embeddings."""
        targets = ctc_targets(labels, IGNORE, self.tokenizer.all_special_ids)
        embeddings = self.llm.get_input_embeddings().weight  # (vocab, d_llm)
        return ctc_embed_loss(self.ctc_head, y, token_lengths, targets, embeddings)

    def response_weights(self, shift_labels: torch.Tensor) -> torch.Tensor:
        """Weight of each response token in the loss, summing to 1: (response_tokens,).

        ``token``: every response token counts the same (the usual LM mean), so a 10-token
        transcript outweighs a one-word label tenfold. ``sample``: every example counts the same,
        its tokens sharing its weight, so short-answer tasks (gender, chord) are not drowned out
        by transcription in a multi-task batch.
        """
        response = shift_labels != IGNORE  # (batch, seq-1)
        if self.recipe.train.loss_reduction == "token":
            return torch.full(
                (int(response.sum()),), 1.0 / response.sum().clamp_min(1), device=response.device
            )
        per_row = response.sum(1, keepdim=True)  # (batch, 1)
        rows = (per_row > 0).sum().clamp_min(1)
        weights = response / (per_row.clamp_min(1) * rows)  # (batch, seq-1)
        return weights[response]

    def response_logits(self, embeds: torch.Tensor, batch: AudioBatch) -> torch.Tensor:
        """Logits only where a response token is predicted: (response_tokens, vocab).

        With a ~50k vocabulary the output projection is most of a small LLM's cost, and a
        batch's responses are a few tokens per row. For heads that are a plain projection
        (Qwen, Llama, Mistral, ...) we run the backbone and project only the selected hidden
        states; other heads (logit soft-capping, logit scales) go through the model's own
        forward with ``logits_to_keep`` so their post-processing is applied.
        """
        selected = batch.labels[:, 1:] != IGNORE  # (batch, seq-1)
        causal = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        head = causal.get_output_embeddings()
        plain = (
            isinstance(head, nn.Linear) and getattr(causal.config, "final_logit_softcapping", None) is None
        )
        backbone = getattr(causal, causal.base_model_prefix, None)
        if plain and backbone is not None and not hasattr(causal, "logit_scale"):
            return head(self.response_hidden(backbone, embeds, batch.attention_mask, selected))
        keep = selected.any(0).nonzero().squeeze(1)  # (kept,)
        out = self.llm(inputs_embeds=embeds, attention_mask=batch.attention_mask, logits_to_keep=keep)
        return out.logits[selected[:, keep]]  # (response_tokens, vocab)

    @staticmethod
    def response_hidden(
        backbone: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, selected: torch.Tensor
    ) -> torch.Tensor:
        """The backbone's last hidden states where ``selected`` (batch, seq-1) marks a response
        token, row after row: (response_tokens, d_llm).

        The rows run in groups of similar length (:func:`~moeaudio.model.row_groups.row_groups`),
        each cut to its last non-padding column, so the padding of a mixed batch is not computed;
        a row's states do not depend on the other rows, so this equals one call over the batch.
        """
        lengths = mask.sum(1).tolist()
        parts, owners = [], []
        for group in row_groups(lengths):
            rows = torch.tensor(group, device=mask.device)
            used = mask[rows].any(0).nonzero()  # columns with a token in some row of the group
            width = int(used.max()) + 1 if len(used) else 1  # trailing all-padding columns dropped
            hidden = backbone(inputs_embeds=embeds[rows, :width], attention_mask=mask[rows, :width])
            keep = selected[rows, : width - 1]  # (rows, width-1)
            parts.append(hidden.last_hidden_state[:, :-1][keep])  # (group's response tokens, d_llm)
            owners.append(rows.repeat_interleave(keep.sum(1)))
        if int(selected.sum()) != sum(len(p) for p in parts):
            raise ValueError("a response token sits in a padding column (labels must be IGNORE there)")
        order = torch.argsort(torch.cat(owners), stable=True)  # back to row-major: row, then position
        return torch.cat(parts)[order]

    def response_nll(self, embeds: torch.Tensor, batch: AudioBatch) -> torch.Tensor:
        """Negative log-likelihood of every response token, row after row: (response_tokens,)."""
        shift_labels = batch.labels[:, 1:]  # (batch, seq-1): position t predicts token t+1
        targets = shift_labels[shift_labels != IGNORE]  # (response_tokens,)
        return nn.functional.cross_entropy(
            self.response_logits(embeds, batch).float(), targets, reduction="none"
        )

    @torch.no_grad()
    def response_logprob(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: the summed log-probability of its response tokens (batch,), and their count."""
        embeds, _ = self.embed(batch)
        nll = self.response_nll(embeds, batch)  # (response_tokens,)
        response = batch.labels[:, 1:] != IGNORE  # (batch, seq-1)
        rows = response.nonzero()[:, 0]  # the row of each response token
        sums = torch.zeros(len(response), device=nll.device).index_add_(0, rows, -nll)
        return sums, response.sum(1)

    @torch.no_grad()
    def generate(
        self,
        batch: AudioBatch,
        max_new_tokens: int = 32,
        num_beams: int = 1,
        streamer=None,
        num_return_sequences: int = 1,
    ) -> list[str]:
        """Greedy (or beam) decoding from the prompt; batch must be left-padded (see Collator).

        ``streamer``: a transformers ``BaseStreamer`` handed each step's new tokens (greedy only;
        ``moeaudio serve`` streams answers with it). ``num_return_sequences`` (<= ``num_beams``): the
        beam search's n best per row, row after row, best first."""
        embeds, _ = self.embed(batch)
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            num_return_sequences=num_return_sequences,
            do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            streamer=streamer,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def init_output_gain(adapter: nn.Module, gain: float | str, embeddings: torch.Tensor) -> None:
    """Start the adapter's output LayerNorm gain at ``gain`` (``adapter.output_gain``):
    ``llm_embeddings`` is the RMS of the LLM's token-embedding matrix, so audio tokens enter the LLM
    at the scale of its text tokens. 1.0 leaves PyTorch's initialisation as it is."""
    if gain == 1.0:
        return
    norm = getattr(adapter, "norm_out", None)
    if not isinstance(norm, nn.LayerNorm):
        raise RecipeError(
            f"adapter.output_gain={gain!r} sets the gain of the adapter's output LayerNorm, which this adapter "
            "has not (adapter.kind dense or moe with adapter.final_norm: true have one); use 1.0"
        )
    value = (
        float(embeddings.detach().float().pow(2).mean().sqrt()) if gain == "llm_embeddings" else float(gain)
    )
    with torch.no_grad():
        norm.weight.fill_(value)


def build_audio_llm(recipe: Recipe, encoder: AudioEncoder | None = None, tokenizer=None) -> AudioLLM:
    """Everything from the recipe: encoder, tokenizer, LLM and adapter (seeded).

    ``tokenizer``: one to use instead of the recipe's. ``llm.vocab: corpus`` needs one, since its
    vocabulary comes from the corpus (``moeaudio.runtime.vocabulary.recipe_tokenizer``, or a
    checkpoint's own)."""
    if tokenizer is None and recipe.llm.vocab == "corpus":
        raise RecipeError(
            "llm.vocab=corpus: the tokenizer is trimmed to the train split, so build the model with "
            "moeaudio.runtime.vocabulary.recipe_tokenizer(recipe) (or a checkpoint's saved tokenizer)"
        )
    tokenizer = tokenizer or build_tokenizer(recipe.llm)
    encoder = encoder or build_encoder(recipe.encoder, seed=recipe.train.seed)
    llm = build_llm(recipe.llm, len(tokenizer), seed=recipe.train.seed)
    torch.manual_seed(recipe.train.seed + 1)
    return AudioLLM(recipe, encoder, llm, tokenizer)
