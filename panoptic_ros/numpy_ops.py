"""Tensor comparisons (and the positions of True in a mask) through numpy views, for eager inference on
the CPU.

Written by hand (a few lines) because this torch build's CPU comparison kernels, which write bool, run
4-8x slower than numpy's SIMD loops (0.9 vs 0.11 ns per element on one core here; an add costs 0.17): the
head and the detection decoding compare every pixel or anchor several times per frame. Results are the
same bools (the same float32 / integer comparisons). Anything traced, compiled, on a GPU or needing
gradients keeps the torch op.
"""
from __future__ import annotations

import numpy as np
import torch


def eager_cpu(*tensors: torch.Tensor) -> bool:
    """True when every tensor is a plain CPU tensor outside any tracing, so numpy may view it."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return all(type(t) is torch.Tensor and t.device.type == "cpu" and not t.requires_grad for t in tensors)


def _numpy_operand(b, like: np.ndarray):
    """``b`` as numpy, compared as torch would compare it with the tensor viewed by ``like``; None when
    numpy's rules could differ (mixed dtypes, a float with an integer tensor, an integer out of range)."""
    if isinstance(b, torch.Tensor):
        other = b.numpy()
        return other if other.dtype == like.dtype else None
    if isinstance(b, float) and like.dtype.kind == "f":
        return like.dtype.type(b)  # torch rounds a Python float to the tensor's float type
    if isinstance(b, int) and not isinstance(b, bool) and like.dtype.kind in "iu":
        info = np.iinfo(like.dtype)
        return like.dtype.type(b) if info.min <= b <= info.max else None
    return None


def _compare(numpy_op, torch_op):
    def compare(a: torch.Tensor, b) -> torch.Tensor:
        if eager_cpu(a, *([b] if isinstance(b, torch.Tensor) else [])):
            view = a.numpy()
            other = _numpy_operand(b, view)
            if other is not None:
                return torch.from_numpy(np.asarray(numpy_op(view, other)))
        return torch_op(a, b)
    compare.__name__ = torch_op.__name__
    compare.__doc__ = f"``torch.{torch_op.__name__}(a, b)`` (broadcasting), through numpy on the CPU."
    return compare


greater = _compare(np.greater, torch.gt)
greater_equal = _compare(np.greater_equal, torch.ge)
less = _compare(np.less, torch.lt)
equal = _compare(np.equal, torch.eq)
not_equal = _compare(np.not_equal, torch.ne)


def flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """``torch.nonzero(mask.reshape(-1)).squeeze(1)`` (int64 positions of True, ascending); numpy's is 2-4x
    faster on the CPU for the mostly-False masks of anchors above the score threshold."""
    if eager_cpu(mask) and mask.dtype == torch.bool:
        return torch.from_numpy(np.flatnonzero(mask.numpy()).astype(np.int64, copy=False))
    return torch.nonzero(mask.reshape(-1)).squeeze(1)
