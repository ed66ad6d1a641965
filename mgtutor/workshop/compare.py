"""What differs between a student's result and the library's, said in the student's terms.

An exercise's function returns one tensor, a tuple of tensors or a dict of tensors; the exercise names
each output (``("A_bar", "B_bar")``). :func:`difference` compares a result with the expected one, output
by output, and returns the first thing a student should fix, most basic first:

    structure   a tensor where a tuple of two was expected, a missing key
    shape       "your `A_bar` has shape (3, 8); expected (8, 3)", with a hint when the sizes are the same
                ones in another order, or the same number of elements
    dtype       float32 for float64 inputs: a tensor created without the inputs' dtype
    non-finite  NaN or inf where the library's result is finite
    values      the largest difference, where it is, and the tolerance it exceeds

or None when everything agrees within the tolerance of the dtype (``torch.testing.assert_close``'s
defaults unless the exercise sets its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

# torch.testing.assert_close's defaults by dtype: (rtol, atol)
DEFAULT_TOLERANCES = {torch.float64: (1e-7, 1e-7), torch.float32: (1.3e-6, 1e-5), torch.float16: (1e-3, 1e-5),
                      torch.bfloat16: (1.6e-2, 1e-5)}


@dataclass(frozen=True)
class Difference:
    """One thing that differs: its kind ("structure", "shape", "dtype", "non-finite", "values"), the output's
    name and a sentence for the student."""

    kind: str
    output: str | None
    text: str


def as_outputs(result, names: Sequence[str]) -> dict[str, object] | Difference:
    """The result as {name: value} in the exercise's order, or a Difference saying why it cannot be read so."""
    if len(names) == 1:
        if isinstance(result, (tuple, list)) and len(result) == 1:
            result = result[0]
        return {names[0]: result}
    wanted = ", ".join(names)
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        if missing:
            return Difference("structure", None, f"your dict lacks {', '.join(map(repr, missing))}; expected the keys {wanted}")
        return {n: result[n] for n in names}
    if isinstance(result, (tuple, list)):
        if len(result) != len(names):
            return Difference("structure", None, f"you returned {len(result)} values; expected {len(names)}: ({wanted})")
        return dict(zip(names, result))
    return Difference("structure", None, f"you returned {_kind(result)}; expected a tuple ({wanted})")


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"one tensor of shape {tuple(value.shape)}"
    return "None" if value is None else f"a {type(value).__name__}"


def tolerances(dtype: torch.dtype, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    default_rtol, default_atol = DEFAULT_TOLERANCES.get(dtype, (0.0, 0.0))
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


def shape_hint(got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """Why two shapes might differ, when the sizes give it away."""
    if sorted(got) == sorted(expected):
        return ": the same sizes in another order; check the order of the axes (an einsum or rearrange pattern)"
    for axis in range(len(got)):
        if len(got) == len(expected) + 1 and got[:axis] + got[axis + 1:] == expected:
            return f": an extra axis {axis} of size {got[axis]}; did you forget to sum over it?"
    for axis in range(len(expected)):
        if len(expected) == len(got) + 1 and expected[:axis] + expected[axis + 1:] == got:
            return f": axis {axis} (of size {expected[axis]}) is missing; did you sum over an axis that should stay?"
    numel = 1
    for size in got:
        numel *= size
    expected_numel = 1
    for size in expected:
        expected_numel *= size
    if numel == expected_numel:
        return ": the same number of elements; a reshape or view where a transpose was meant?"
    return ""


def _where(index: tuple[int, ...]) -> str:
    return "" if not index else f" at index {index}"


def compare_tensor(name: str, got, expected: torch.Tensor, rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between one output and the expected tensor, or None."""
    if not isinstance(got, torch.Tensor):
        return Difference("structure", name, f"your `{name}` is {_kind(got)}; expected a tensor of shape {tuple(expected.shape)}")
    if got.shape != expected.shape:
        got_shape, expected_shape = tuple(got.shape), tuple(expected.shape)
        return Difference("shape", name, f"your `{name}` has shape {got_shape}; expected {expected_shape}{shape_hint(got_shape, expected_shape)}")
    if got.dtype != expected.dtype:
        return Difference(
            "dtype", name,
            f"your `{name}` is {str(got.dtype).removeprefix('torch.')} where mgtutor's is "
            f"{str(expected.dtype).removeprefix('torch.')}: make new tensors from the inputs "
            "(x.new_zeros(...), torch.zeros_like(x)) so that they keep the inputs' dtype",
        )
    got, expected = got.detach(), expected.detach()
    if expected.is_floating_point() or expected.is_complex():
        bad = ~torch.isfinite(got) & torch.isfinite(expected)
        if bad.any():
            kinds = "NaN" if torch.isnan(got[bad]).all() else "inf or NaN"
            first = tuple(int(i) for i in bad.nonzero()[0])
            return Difference(
                "non-finite", name,
                f"your `{name}` has {kinds} in {int(bad.sum())} of {bad.numel()} entries{_where(first)} where mgtutor's is finite",
            )
        rtol, atol = tolerances(expected.dtype, rtol, atol)
        close = torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = got == expected
    if close.all():
        return None
    error = (got - expected).abs()
    error = torch.where(close, torch.zeros_like(error), error)
    flat = int(torch.nan_to_num(error, nan=float("inf")).flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), got.shape))
    return Difference(
        "values", name,
        f"your `{name}` differs in {int((~close).sum())} of {close.numel()} entries; the largest difference is "
        f"{float(error[index]):.3g}{_where(index)} (yours {float(got[index]):.6g}, mgtutor's {float(expected[index]):.6g})",
    )


def difference(result, expected, names: Sequence[str], rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between a student's result and the expected one (both as the function returns
    them), output by output in the exercise's order; None when all agree."""
    got = as_outputs(result, names)
    if isinstance(got, Difference):
        return got
    wanted = as_outputs(expected, names)
    assert not isinstance(wanted, Difference), f"the reference does not return ({', '.join(names)})"
    for name in names:
        found = compare_tensor(name, got[name], wanted[name], rtol, atol)
        if found is not None:
            return found
    return None


def same(result, other, names: Sequence[str], rtol: float | None = None, atol: float | None = None) -> bool:
    """Whether two results agree, NaN matching NaN (to recognise a known mistake that produces NaN)."""
    a, b = as_outputs(result, names), as_outputs(other, names)
    if isinstance(a, Difference) or isinstance(b, Difference):
        return False
    for name in names:
        x, y = a[name], b[name]
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or x.shape != y.shape or x.dtype != y.dtype:
            return False
        r, t = tolerances(y.dtype, rtol, atol)
        if not torch.isclose(x.detach(), y.detach(), rtol=r, atol=t, equal_nan=True).all():
            return False
    return True
