"""The ``grouped`` dispatch backend of ``RoutedExperts``: all experts in one ``grouped_mm`` per layer.

Like ``sort``, the ``T*k`` (token, expert) slots are sorted by expert; instead of a Python loop
over contiguous slices, each of the two expert matmuls is one ``torch.nn.functional.grouped_mm``
call with per-expert row offsets (no per-expert kernel launch, no host sync for the sizes).

Support varies: in torch 2.13 ``grouped_mm`` runs forward and backward on CPU for
float32/bfloat16/float16 when every feature width is a multiple of 16 bytes; on CUDA it depends
on the GPU and dtype. So ``grouped_unsupported_reason`` checks the widths and then probes one
tiny forward+backward once per (device, dtype); ``backend=auto`` falls back to ``sort`` wherever
the probe fails.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from moeaudio.model.moe import RoutedExperts


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    ``grouped_mm``'s backward rejects stride-0 (expanded) gradients such as the one ``y.sum()``
    produces; materialising them here keeps the backend usable with any loss.
    """

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        return grad.contiguous()


def _grouped_mm(x: Tensor, w: Tensor, offs: Tensor) -> Tensor:
    """x (N, a), w (E, a, b), offs (E,) cumulative group ends -> (N, b); rows of group e use w[e]."""
    return _ContiguousGrad.apply(F.grouped_mm(x, w, offs=offs))


@functools.cache
def _grouped_probe(device_type: str, dtype: torch.dtype) -> str | None:
    """Run a tiny grouped_mm forward+backward once; None if it works, else the reason it does not."""
    if not hasattr(F, "grouped_mm"):
        return f"torch {torch.__version__} has no torch.nn.functional.grouped_mm"
    try:
        # constant inputs: the probe must not consume the global RNG (it would shift dropout
        # masks of the first run in a process and break exact resume)
        x = torch.ones(8, 16, device=device_type, dtype=dtype, requires_grad=True)
        w = torch.ones(2, 16, 16, device=device_type, dtype=dtype, requires_grad=True)
        offs = torch.tensor([3, 8], device=device_type, dtype=torch.int32)
        with torch.enable_grad():  # the first call may happen under no_grad (evaluation)
            _grouped_mm(x, w, offs).sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "unsupported here"
        return f"grouped_mm fails on {device_type}/{dtype}: {str(exc).splitlines()[0]}"
    return None


def grouped_unsupported_reason(
    device: torch.device, dtype: torch.dtype, widths: tuple[int, ...]
) -> str | None:
    """Why the ``grouped`` backend cannot run here (None when it can)."""
    if device.type == "meta":
        return "grouped_mm cannot run on the meta device"
    align = 16 // torch.empty((), dtype=dtype).element_size()
    if any(w % align for w in widths):
        return f"grouped_mm needs feature widths {widths} to be multiples of {align} for {dtype} (16-byte strides)"
    return _grouped_probe(device.type, dtype)


def grouped_mlp(experts: RoutedExperts, xs: Tensor, sorted_ids: Tensor, counts: Tensor) -> Tensor:
    """Every expert's MLP on its contiguous rows of ``xs`` (T*k, d_in) -> (T*k, d_out).

    ``xs`` rows are sorted by expert, ``sorted_ids`` (T*k,) is each row's expert and ``counts``
    (E,) the rows per expert; empty groups are fine (their weights get zero gradient).
    """
    offs = counts.cumsum(0).to(torch.int32)  # (E,) end row of each expert's group
    h = _grouped_mm(xs, experts.w1, offs)  # (T*k, h)
    if experts.b1 is not None:
        h = h + experts.b1[sorted_ids]
    y = _grouped_mm(experts.act(h), experts.w2, offs)  # (T*k, d_out)
    return y + experts.b2[sorted_ids] if experts.b2 is not None else y
