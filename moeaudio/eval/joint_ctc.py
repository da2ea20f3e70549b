"""Joint CTC/LLM transcription: the n-best of both readers of the audio, each scored by both.

After a ``ctc_embed`` stage (:mod:`moeaudio.model.ctc_embed`) the adapter is a CTC model over the
LLM's own vocabulary, and it reads the audio differently from the LLM behind it: its transcript is
faithful to the sounds but spelled badly ("there was a lul in the storm"), while the LLM's is fluent
and sometimes its own sentence ("there was a low in the street"). Hybrid CTC/attention decoding
(Watanabe et al., 2017, ESPnet) and WeNet's attention rescoring combine two such readers; since both
speak the same tokens here, combining them is n-best rescoring:

* candidates: the LLM's beam-search n-best and the adapter's CTC prefix beam search n-best
  (Hannun et al., 2014), ``num_beams`` of each, duplicates merged;
* each candidate ``y`` scored ``w * log p_ctc(y | audio) + (1 - w) * log p_llm(y, <end of turn> | prompt)``
  (both summed over the sequence; the LLM's through the same training-style rows as
  ``--scoring loglik``);
* the best one is the transcript. ``w = 0`` keeps the LLM's own ranking of the union (it may still
  prefer a CTC candidate), ``w = 1`` the CTC's.

Both scores are sums of log-probabilities, so a shorter candidate is favoured; an optional length
bonus ``b * len(y)`` (``y`` in LLM tokens; ESPnet's ``penalty``) offsets that.

The weight is a decoding setting (``eval.ctc_weight``, ``--ctc-weight``), chosen on a validation split
as ESPnet's ``ctc_weight`` is (``scripts/ctc_weight_sweep.py``, which sweeps the bonus too).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import Tensor

from moeaudio.eval.ranking import rank_all
from moeaudio.model.audio_llm import AudioLLM
from moeaudio.model.ctc_embed import BLANK
from moeaudio.progress import progress_bar
from moeaudio.runtime.batching import Collator, Example, iter_batches

__all__ = [
    "ctc_log_probs",
    "ctc_prefix_beam_search",
    "best_transcript",
    "ctc_sequence_logprob",
    "joint_ctc_transcribe",
    "joint_score",
    "nbest_scores",
]

_NEG_INF = -math.inf


def _logaddexp(*values: float) -> float:
    top = max(values)
    if top == _NEG_INF:
        return _NEG_INF
    return top + math.log(sum(math.exp(v - top) for v in values))


@torch.no_grad()
def ctc_log_probs(model: AudioLLM, examples: Sequence[Example]) -> list[Tensor]:
    """Per example, the CTC log-probabilities of its audio tokens over (blank, LLM tokens):
    (audio tokens, vocab + 1) each. The model needs the head of a ``ctc_embed`` stage."""
    if model.ctc_head is None:
        raise ValueError(
            "joint CTC decoding needs a model trained with a ctc_embed stage (its recipe has none); "
            "drop ctc_weight"
        )
    batch = Collator(model)(list(examples)).to(next(model.parameters()).device)
    y, token_lengths, _ = model.adapt(model.encoder_states(batch), batch.frame_lengths)
    embeddings = model.llm.get_input_embeddings().weight  # (vocab, d_llm)
    logp = model.ctc_head.logits(y, embeddings).log_softmax(-1)  # (tokens, vocab + 1)
    return list(torch.split(logp, [int(n) for n in token_lengths.tolist()]))


def ctc_prefix_beam_search(logp: Tensor, beam: int, prune: int = 8) -> list[tuple[list[int], float]]:
    """The ``beam`` most likely label sequences of one clip under CTC, best first, with their
    log-probabilities summed over all alignments kept by the search (Hannun et al., 2014).

    logp: (frames, vocab + 1), class 0 the blank, class ``v + 1`` token ``v``; only the ``prune`` most
    likely classes of each frame are expanded. Returns LLM token ids (class - 1).
    """
    # prefix -> (log p ending in blank, log p ending in its last token)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG_INF)}
    for frame in logp.float():
        top = torch.topk(frame, min(prune, frame.numel()))
        classes, scores = top.indices.tolist(), top.values.tolist()
        nxt: dict[tuple[int, ...], list[float]] = {}
        empty = (_NEG_INF, _NEG_INF)
        for prefix, (p_blank, p_token) in beams.items():
            for c, p in zip(classes, scores, strict=True):
                if c == BLANK:
                    s = nxt.setdefault(prefix, [*empty])
                    s[0] = _logaddexp(s[0], p_blank + p, p_token + p)
                    continue
                longer = nxt.setdefault((*prefix, c), [*empty])
                if prefix and prefix[-1] == c:
                    longer[1] = _logaddexp(longer[1], p_blank + p)  # a repeat needs a blank between
                    same = nxt.setdefault(prefix, [*empty])
                    same[1] = _logaddexp(same[1], p_token + p)  # or it merges into the last token
                else:
                    longer[1] = _logaddexp(longer[1], p_blank + p, p_token + p)
        alive = ((prefix, s) for prefix, s in nxt.items() if _logaddexp(*s) > _NEG_INF)
        ranked = sorted(alive, key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam]
        beams = {prefix: (s[0], s[1]) for prefix, s in ranked}
    out = [([c - 1 for c in prefix], _logaddexp(*s)) for prefix, s in beams.items()]
    return sorted(out, key=lambda x: x[1], reverse=True)


def joint_score(
    ctc_weight: float, ctc: float, llm: float, length: int = 0, length_bonus: float = 0.0
) -> float:
    """``w * ctc + (1 - w) * llm + b * length``, where a weight of 0 ignores the CTC score (even an
    impossible one) and a weight of 1 the LLM's."""
    if ctc_weight == 0.0:
        score = llm
    elif ctc_weight == 1.0:
        score = ctc
    else:
        score = ctc_weight * ctc + (1 - ctc_weight) * llm
    return score + length_bonus * length


def ctc_sequence_logprob(logp: Tensor, ids: Sequence[Sequence[int]]) -> list[float]:
    """log p_ctc(ids | clip) of each token sequence for one clip, over all alignments (exact,
    ``torch.nn.functional.ctc_loss``); -inf where the clip has too few audio tokens for it."""
    if not ids:
        return []
    n = len(ids)
    frames = logp.float()[:, None].expand(-1, n, -1)  # (frames, n, vocab + 1)
    flat = torch.tensor([c + 1 for seq in ids for c in seq], dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(
        frames,
        flat,
        torch.full((n,), logp.shape[0], dtype=torch.long),
        torch.tensor([len(seq) for seq in ids], dtype=torch.long),
        blank=BLANK,
        reduction="none",
        zero_infinity=False,
    )
    return [-float(v) for v in loss]


Scores = dict[str, tuple[float, float, int]]  # candidate -> (log p_ctc, log p_llm, its LLM tokens)


def nbest_scores(
    model: AudioLLM,
    examples: Sequence[Example],
    batch_size: int,
    max_new_tokens: int,
    num_beams: int,
    progress: bool,
    collate: Collator | None = None,
) -> list[Scores]:
    """Per example, every candidate transcript with its CTC and LLM log-probabilities and its length
    in LLM tokens: the LLM's ``num_beams``-best and the CTC prefix beam search's, merged (module
    docstring)."""
    collate = collate or Collator(model, for_generation=True)
    device = next(model.parameters()).device
    tok = model.tokenizer
    candidates: list[list[str]] = [[] for _ in examples]
    ctc_scores: list[list[float]] = [[] for _ in examples]
    lengths: list[list[int]] = [[] for _ in examples]
    with torch.no_grad(), progress_bar("joint CTC/LLM n-best", len(examples), progress) as advance:
        for idx, batch in iter_batches(examples, batch_size, collate, device):
            llm_nbest = model.generate(
                batch, max_new_tokens=max_new_tokens, num_beams=num_beams, num_return_sequences=num_beams
            )  # (len(idx) * num_beams,) texts, example after example
            per_clip = ctc_log_probs(model, [examples[i] for i in idx])
            for k, (i, logp) in enumerate(zip(idx, per_clip, strict=True)):
                texts = llm_nbest[k * num_beams : (k + 1) * num_beams]
                texts += [
                    tok.decode(ids, skip_special_tokens=True).strip()
                    for ids, _ in ctc_prefix_beam_search(logp, num_beams)
                ]
                candidates[i] = [t for t in dict.fromkeys(texts) if t] or [""]  # merged, in order
                ids = [tok(t, add_special_tokens=False).input_ids for t in candidates[i]]
                ctc_scores[i] = ctc_sequence_logprob(logp, ids)
                lengths[i] = [len(x) for x in ids]
            advance(len(idx))
    _, llm_scores, _ = rank_all(model, examples, candidates, batch_size, progress=False, shots=collate.shots)
    return [
        {c: (cs, lp[c], n) for c, cs, n in zip(cands, ctc, lens, strict=True)}
        for cands, ctc, lp, lens in zip(candidates, ctc_scores, llm_scores, lengths, strict=True)
    ]


def best_transcript(scores: Scores, ctc_weight: float, length_bonus: float = 0.0) -> str:
    """The candidate of highest :func:`joint_score` (the first listed on a tie)."""
    return max(scores, key=lambda c: joint_score(ctc_weight, *scores[c], length_bonus=length_bonus))


def joint_ctc_transcribe(
    model: AudioLLM,
    examples: Sequence[Example],
    batch_size: int,
    max_new_tokens: int,
    num_beams: int,
    ctc_weight: float,
    progress: bool,
    collate: Collator | None = None,
) -> tuple[list[str], float]:
    """Transcripts by joint CTC/LLM rescoring (module docstring) and the rate in items/s."""
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be within [0, 1] (got {ctc_weight})")
    start = time.time()
    scores = nbest_scores(model, examples, batch_size, max_new_tokens, num_beams, progress, collate)
    out = [best_transcript(s, ctc_weight) for s in scores]
    return out, len(examples) / max(1e-9, time.time() - start)
