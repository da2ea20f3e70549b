"""``ctc_embed``: align the adapter with a pretrained LLM's input space before the LLM is trained.

A fresh adapter's outputs mean nothing to a pretrained LLM, and the LLM does not start reading them
within a few hundred next-token steps: it learns the answers' form instead. This objective trains the
adapter alone, with no LLM forward, so that each audio token lands near the LLM's own embedding of a
token it says: CTC (Graves et al., 2006) over the response's LLM tokens, where the score of token
``v`` for audio token ``y`` is a distance to the LLM's frozen embedding ``e_v``::

    logit_v(y) = s * (2 y.e_v - |e_v|^2)  =  s * (|y|^2 - |y - e_v|^2)     # |y|^2 is the same for all v

plus a learned blank vector ``b`` scored the same way (CTC's "no token here"), and a learned
temperature ``s``. Being nearest to ``e_v`` is what makes the audio token read as ``v`` to the LLM,
which a separate output layer (a CTC head of its own) would not give. A step costs one
(audio tokens x vocabulary) product, about half a second for 16 clips against SmolLM2's 49k embeddings on
two CPU cores, against several for one LLM step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

BLANK = 0  # CTC class 0 is the blank; LLM token v is class v + 1


class EmbeddingCTCHead(nn.Module):
    """The blank vector and temperature of the ``ctc_embed`` objective (the embeddings are the LLM's)."""

    def __init__(self, d_llm: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.blank = nn.Parameter(torch.zeros(d_llm))  # scores 0 at the start: CTC's usual blank-first phase
        # shape (1,), not a 0-dim scalar: DeepSpeed broadcasts parameters as bytes, which a 0-dim tensor cannot be viewed as
        self.log_scale = nn.Parameter(torch.full((1,), math.log(init_scale)))

    def _neg_sq_norms(self, embeddings: Tensor, table: Tensor) -> Tensor:
        """-|e_v|^2 of every row of ``table`` (``embeddings`` in fp32) as (V,), kept while the embeddings
        are unchanged (same storage, same version): they are frozen, and squaring all V rows each
        step was 6 % of it."""
        key = (embeddings.data_ptr(), embeddings._version, tuple(embeddings.shape), embeddings.device)
        if getattr(self, "_sq_key", None) != key:
            self._sq_key, self._sq = key, (table**2).sum(-1).neg_()
        return self._sq

    def logits(self, y: Tensor, embeddings: Tensor) -> Tensor:
        """Scores of every class for each audio token: y (T, d), embeddings (V, d) -> (T, V + 1).

        The blank is scored apart from the vocabulary: were it one row of a (V + 1, d) table, autograd
        would compute a gradient for all V frozen rows too (a third of the step's matmul FLOPs, and a
        (V, d) square and copy), only to keep the blank's row.
        """
        y = y.float()  # (T, d)
        table = embeddings.detach().float()  # (V, d), frozen
        vocab = torch.addmm(
            self._neg_sq_norms(embeddings, table), y, table.T, alpha=2
        )  # (T, V): 2 y.e_v - |e_v|^2
        blank = self.blank.float()  # (d,)
        blank_score = 2 * y @ blank - (blank**2).sum()  # (T,)
        return self.log_scale.exp() * torch.cat([blank_score[:, None], vocab], dim=1)  # (T, V + 1)


def ctc_targets(labels: Tensor, ignore: int, drop_ids: Sequence[int]) -> list[Tensor]:
    """Each row's response tokens (labels that are not ``ignore``) minus ``drop_ids`` (the end-of-turn
    and other special tokens, which the audio does not say): a list of (target_len,) id tensors."""
    drop = torch.tensor(sorted(set(drop_ids)), dtype=labels.dtype, device=labels.device)
    rows = []
    for row in labels:
        ids = row[row != ignore]
        rows.append(ids[~torch.isin(ids, drop)] if len(drop) else ids)
    return rows


def ctc_embed_loss(
    head: EmbeddingCTCHead,
    y: Tensor,
    token_lengths: Tensor,
    targets: Sequence[Tensor],
    embeddings: Tensor,
) -> Tensor:
    """Mean CTC loss of a batch (each clip's loss divided by its target length, as ``ctc_loss``'s
    ``mean``); clips too short for their transcript contribute zero (``zero_infinity``).

    y: adapter outputs of every valid audio token, clips one after another (sum(token_lengths), d);
    token_lengths: (batch,); targets: per clip, its LLM token ids; embeddings: (V, d), frozen.
    """
    logp = head.logits(y, embeddings.detach()).log_softmax(-1)  # (tokens, V + 1)
    # Into (batch, T_max, V + 1) with one masked write (clips one after another is the mask's row-major
    # order), whose backward is one gather: pad_sequence's backward copied the whole padded gradient
    # once per clip, a third of a step at 16 clips x 49k classes. Padding is never read by ctc_loss.
    lengths = token_lengths.to(torch.long).cpu()
    mask = torch.arange(int(lengths.max()) if len(lengths) else 0)[None] < lengths[:, None]  # (batch, T_max)
    padded = logp.new_zeros(*mask.shape, logp.shape[-1])
    padded[mask.to(logp.device)] = logp
    padded = padded.transpose(0, 1)  # (T_max, batch, V + 1), as ctc_loss takes it
    flat = torch.cat([t.to(y.device) + 1 for t in targets]) if targets else y.new_zeros(0, dtype=torch.long)
    return nn.functional.ctc_loss(
        padded,
        flat.long(),
        lengths,
        torch.tensor([len(t) for t in targets], dtype=torch.long),
        blank=BLANK,
        reduction="mean",
        zero_infinity=True,
    )


@torch.no_grad()
def ctc_greedy_decode(
    head: EmbeddingCTCHead, y: Tensor, token_lengths: Tensor, embeddings: Tensor
) -> list[list[int]]:
    """Best path per clip: argmax class per audio token, repeats merged, blanks removed -> LLM token ids."""
    best = head.logits(y, embeddings).argmax(-1)  # (tokens,)
    out = []
    for path in torch.split(best, [int(n) for n in token_lengths.tolist()]):
        merged = torch.unique_consecutive(path)
        out.append([int(c) - 1 for c in merged.tolist() if c != BLANK])
    return out
