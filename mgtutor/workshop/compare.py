"""What differs between a student's result and the library's, said in the student's terms.

An exercise's function returns one value, a tuple of values or a dict of values; the exercise names each
output (``("A_bar", "B_bar")``). A value is a torch tensor, a numpy array (the data pipeline's frame
numbers), a number (a padding, a count, an overlap), None, or a list of numbers and None (window starts,
the index each gesture is credited to). :func:`difference` compares a result with the expected one,
output by output, and returns the first thing a student should fix, most basic first:

    structure   a tensor where a tuple of two was expected, a missing key, a list where a number was expected
    shape       "your `A_bar` has shape (3, 8); expected (8, 3)", with a hint when the sizes are the same
                ones in another order, or the same number of elements; a list of another length
    dtype       float32 for float64 inputs: a tensor created without the inputs' dtype; floats where
                mgtutor's array holds whole numbers
    non-finite  NaN or inf where the library's result is finite
    values      the largest difference, where it is, and the tolerance it exceeds; both lists, when short

or None when everything agrees within the tolerance of the dtype (``torch.testing.assert_close``'s
defaults unless the exercise sets its own; Python floats as float64). Whole numbers are compared exactly.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
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
        # a one-tuple of an array (``return (y,)``) is that array; a list of one number is a list
        if isinstance(result, (tuple, list)) and len(result) == 1 and isinstance(result[0], (torch.Tensor, np.ndarray)):
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
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if value is None:
        return "None"
    kind = type(value).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{article} {kind} ({value!r})" if isinstance(value, (numbers.Number, np.bool_)) else f"{article} {kind}"


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
    return _compare_values(name, got.detach(), expected.detach(), rtol, atol)


def compare_array(name: str, got, expected: np.ndarray, rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between one output and the expected numpy array, or None."""
    if not isinstance(got, np.ndarray):
        return Difference(
            "structure", name, f"your `{name}` is {_kind(got)}; expected a numpy array of shape {expected.shape} ({expected.dtype})"
        )
    if got.shape != expected.shape:
        return Difference("shape", name, f"your `{name}` has shape {got.shape}; expected {expected.shape}{shape_hint(got.shape, expected.shape)}")
    if got.dtype != expected.dtype:
        hint = ""
        if np.issubdtype(expected.dtype, np.integer) and np.issubdtype(got.dtype, np.floating):
            hint = ": mgtutor's holds whole numbers (frame numbers, indices); np.floor keeps floats, .astype(np.int64) makes them ints"
        elif np.issubdtype(expected.dtype, np.floating) and np.issubdtype(got.dtype, np.integer):
            hint = ": mgtutor's holds fractions; integer division (//) or an int array drops them"
        return Difference("dtype", name, f"your `{name}` holds {got.dtype} where mgtutor's holds {expected.dtype}{hint}")
    if got.dtype == object:
        return Difference("dtype", name, f"your `{name}` is an array of Python objects; expected {expected.dtype}")
    return _compare_values(name, torch.from_numpy(np.ascontiguousarray(got)), torch.from_numpy(np.ascontiguousarray(expected)), rtol, atol)


def _compare_values(name: str, got: torch.Tensor, expected: torch.Tensor, rtol: float | None, atol: float | None) -> Difference | None:
    """Values of two tensors of the same shape and dtype: non-finite entries first, then the largest difference."""
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
    error = (got.double() - expected.double()).abs()
    error = torch.where(close, torch.zeros_like(error), error)
    flat = int(torch.nan_to_num(error, nan=float("inf")).flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), got.shape))
    return Difference(
        "values", name,
        f"your `{name}` differs in {int((~close).sum())} of {close.numel()} entries; the largest difference is "
        f"{float(error[index]):.3g}{_where(index)} (yours {_number(got[index].item())}, mgtutor's {_number(expected[index].item())})",
    )


def _number(value) -> str:
    """A number as a student reads it: whole numbers as they are, others to 6 significant digits."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return repr(value if value is None else bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.6g}"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))


def compare_scalar(name: str, got, expected, rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between one output and an expected number, bool or None, or None.

    Whole numbers (a padding, a count) must be equal and whole; a float is compared with float64's
    tolerance (or the exercise's), an int standing in for it (``return 0``) included."""
    if expected is None or isinstance(expected, (bool, np.bool_)):
        if got is None and expected is None:
            return None
        if expected is not None and isinstance(got, (bool, np.bool_)) and bool(got) == bool(expected):
            return None
        shown = _number(got) if got is None or isinstance(got, (bool, np.bool_)) else _kind(got)
        return Difference("values", name, f"your `{name}` is {shown}; mgtutor's is {_number(expected)}")
    if not _is_number(got):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            return Difference("structure", name, f"your `{name}` is a tensor holding one number; expected a Python number "
                              f"({_number(expected)}): .item() turns the one into the other")
        return Difference("structure", name, f"your `{name}` is {_kind(got)}; expected a number ({_number(expected)})")
    if isinstance(expected, numbers.Integral):
        if not isinstance(got, numbers.Integral):
            whole = math.isfinite(got) and float(got).is_integer()
            return Difference(
                "dtype" if whole and got == expected else "values", name,
                f"your `{name}` is {float(got)!r}" + (", a float" if whole else "") + f"; mgtutor's is the whole number {int(expected)}"
                + (" (int(...), or // in place of /)" if whole else ""),
            )
        return None if int(got) == int(expected) else Difference("values", name, f"your `{name}` is {int(got)}; mgtutor's is {int(expected)}")
    got, expected = float(got), float(expected)
    if math.isfinite(expected) and not math.isfinite(got):
        return Difference("non-finite", name, f"your `{name}` is {got}; mgtutor's is {_number(expected)}")
    rtol, atol = tolerances(torch.float64, rtol, atol)
    if got == expected or (math.isnan(got) and math.isnan(expected)) or abs(got - expected) <= atol + rtol * abs(expected):
        return None
    return Difference("values", name, f"your `{name}` is {_number(got)}; mgtutor's is {_number(expected)} (a difference of {abs(got - expected):.3g})")


# lists up to this long are shown whole in a message
SHOWN_ITEMS = 12


def compare_list(name: str, got, expected: Sequence, rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between one output and an expected list (of numbers, None, or arrays), or None."""
    kind = type(expected).__name__
    if not isinstance(got, (list, tuple)):
        return Difference("structure", name, f"your `{name}` is {_kind(got)}; expected a {kind} of {len(expected)}"
                          + (" (list(...) makes one)" if isinstance(got, (np.ndarray, torch.Tensor, range)) else ""))
    items = [compare_output(f"{name}[{i}]", g, e, rtol, atol) for i, (g, e) in enumerate(zip(got, expected))]
    first = next((d for d in items if d is not None), None)
    if first is None and len(got) == len(expected):
        return None
    simple = all(x is None or isinstance(x, (numbers.Number, np.bool_)) for x in (*got, *expected))
    if simple and max(len(got), len(expected)) <= SHOWN_ITEMS:
        count = f" ({len(got)} items where mgtutor has {len(expected)})" if len(got) != len(expected) else ""
        shown = ", ".join(_number(x) for x in got), ", ".join(_number(x) for x in expected)
        return Difference("shape" if count else "values", name, f"your `{name}` is [{shown[0]}]; mgtutor's is [{shown[1]}]{count}")
    if first is not None:
        return first
    return Difference("shape", name, f"your `{name}` has {len(got)} items; mgtutor's has {len(expected)}")


def compare_output(name: str, got, expected, rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between one output and the expected value, whatever its kind (module docstring)."""
    if isinstance(expected, torch.Tensor):
        return compare_tensor(name, got, expected, rtol, atol)
    if isinstance(expected, np.ndarray):
        return compare_array(name, got, expected, rtol, atol)
    if isinstance(expected, (list, tuple)):
        return compare_list(name, got, expected, rtol, atol)
    return compare_scalar(name, got, expected, rtol, atol)


def difference(result, expected, names: Sequence[str], rtol: float | None = None, atol: float | None = None) -> Difference | None:
    """The first difference between a student's result and the expected one (both as the function returns
    them), output by output in the exercise's order; None when all agree."""
    got = as_outputs(result, names)
    if isinstance(got, Difference):
        return got
    wanted = as_outputs(expected, names)
    assert not isinstance(wanted, Difference), f"the reference does not return ({', '.join(names)})"
    for name in names:
        found = compare_output(name, got[name], wanted[name], rtol, atol)
        if found is not None:
            return found
    return None


def same(result, other, names: Sequence[str], rtol: float | None = None, atol: float | None = None) -> bool:
    """Whether two results agree, NaN matching NaN (to recognise a known mistake that produces NaN)."""
    a, b = as_outputs(result, names), as_outputs(other, names)
    if isinstance(a, Difference) or isinstance(b, Difference):
        return False
    return all(compare_output(name, a[name], b[name], rtol, atol) is None for name in names)
