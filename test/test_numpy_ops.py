"""numpy_ops: the same bools as torch's comparisons, and torch's own op wherever numpy's rules could differ."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from panoptic_ros import numpy_ops

PAIRS = [(numpy_ops.greater, torch.gt), (numpy_ops.greater_equal, torch.ge), (numpy_ops.less, torch.lt),
         (numpy_ops.equal, torch.eq), (numpy_ops.not_equal, torch.ne)]


def values(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        x = torch.randint(-3, 4, shape, generator=g).to(dtype) / 2  # many ties
        x.view(-1)[::7] = float("-inf")
        x.view(-1)[::11] = float("nan")
        x.view(-1)[::13] = -0.0
        return x
    low, high = (0, 4) if dtype == torch.uint8 else (-3, 4)
    return torch.randint(low, high, shape, generator=g).to(dtype)


@pytest.mark.parametrize("ours, theirs", PAIRS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.int64, torch.uint8])
@pytest.mark.parametrize("shapes", [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (2, 1, 4, 5)), ((7,), (1,))])
def test_tensor_comparisons_equal_torch(ours, theirs, dtype, shapes):
    a, b = values(dtype, shapes[0], 0), values(dtype, shapes[1], 1)
    got = ours(a, b)
    assert got.dtype == torch.bool and torch.equal(got, theirs(a, b))
    strided_a, strided_b = a[..., ::2], b[..., ::2]  # views numpy reads with strides
    assert torch.equal(ours(strided_a, strided_b), theirs(strided_a, strided_b))


@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_python_numbers_are_rounded_to_the_tensor_type_as_torch_does(ours, theirs):
    threshold = 0.4  # not a float32: torch compares against float32(0.4), and so must we
    edge = torch.tensor([np.nextafter(np.float32(0.4), np.float32(0)), np.float32(0.4),
                         np.nextafter(np.float32(0.4), np.float32(1))], dtype=torch.float32)
    assert torch.equal(ours(edge, threshold), theirs(edge, threshold))
    ints = torch.tensor([-(2 ** 63), -1, 0, 5, 2 ** 63 - 1], dtype=torch.int64)
    for number in (-(2 ** 63), 0, 5, 2 ** 63 - 1):
        assert torch.equal(ours(ints, number), theirs(ints, number))


def test_cases_where_numpy_could_differ_go_to_torch(monkeypatch):
    calls = []
    from_numpy = torch.from_numpy  # every numpy result comes back through it
    monkeypatch.setattr(torch, "from_numpy", lambda a: calls.append(a) or from_numpy(a))
    f32, i32 = torch.tensor([0.5, 2.5]), torch.tensor([0, 3], dtype=torch.int32)
    assert torch.equal(numpy_ops.greater(i32, 2.5), torch.gt(i32, 2.5))  # a float against integers
    assert torch.equal(numpy_ops.greater(f32, i32), torch.gt(f32, i32))  # mixed dtypes: torch promotes
    u8 = torch.tensor([0, 200], dtype=torch.uint8)
    assert torch.equal(numpy_ops.greater(u8, 100), torch.gt(u8, 100))  # in range: numpy
    with warnings.catch_warnings():  # out of range: torch wraps the number, numpy would warn or raise
        warnings.simplefilter("error")
        for op, ours in ((torch.gt, numpy_ops.greater), (torch.lt, numpy_ops.less), (torch.eq, numpy_ops.equal)):
            assert torch.equal(ours(u8, 300), op(u8, 300)) and torch.equal(ours(u8, -1), op(u8, -1))
    assert len(calls) == 1
    with torch.enable_grad():
        needs_grad = torch.tensor([0.5, 2.5], requires_grad=True)
        assert torch.equal(numpy_ops.greater(needs_grad, 1.0), torch.tensor([False, True]))
    assert len(calls) == 1


def test_traced_and_exported_code_keeps_the_torch_op():
    class Compare(torch.nn.Module):
        def forward(self, x, y):
            return numpy_ops.greater(x, y).to(torch.float32) + numpy_ops.equal(x, 0.0).to(torch.float32)

    x, y = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 1.0])
    program = torch.export.export(Compare(), (x, y), strict=False)
    other = torch.tensor([3.0, 0.0, -1.0])
    assert torch.equal(program.module()(other, y), Compare()(other, y))  # not constants of the example
    traced = torch.jit.trace(Compare(), (x, y))
    assert torch.equal(traced(other, y), Compare()(other, y))
    assert not numpy_ops.eager_cpu(torch.zeros(1, device="meta"))


@pytest.mark.parametrize("size", [0, 7, 65541, 331776])
@pytest.mark.parametrize("density", [0.0, 1e-4, 0.02, 1.0])
def test_flatnonzero_equals_torch_nonzero(size, density):
    mask = torch.rand(size, generator=torch.Generator().manual_seed(size)) < density
    want = torch.nonzero(mask).squeeze(1)
    got = numpy_ops.flatnonzero(mask)
    assert got.dtype == want.dtype == torch.int64 and torch.equal(got, want)
    strided = torch.stack([mask, mask], 1).reshape(-1)[::2]
    assert torch.equal(numpy_ops.flatnonzero(strided), want)
    grid = mask[: size // 4 * 4].reshape(4, -1)  # any shape: positions in the flattened mask
    assert torch.equal(numpy_ops.flatnonzero(grid), torch.nonzero(grid.reshape(-1)).squeeze(1))
