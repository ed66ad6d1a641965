"""Clip augmentation on the device: the same numbers as the per-clip CPU path, PointTAD's transforms against
independent per-pixel references, and the uint8 data path through the dataset and the batch."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from mgtutor.config import ConfigError, DataConfig
from mgtutor.data import augment, synthetic
from mgtutor.data.augment import PARAMETERS, augment_clips, draw_parameters, hflip, pointtad_distort, rotate, to_float
from mgtutor.data.cache import prepare_cache
from mgtutor.data.dataset import WindowDataset, collate, model_inputs
from mgtutor.data.smg import load_root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic.write_synthetic(tmp_path_factory.mktemp("aug") / "root", sequences=2, seconds=8, size=32, seed=3, workers=1)


@pytest.fixture(scope="module")
def cache(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug") / "cache"
    prepare_cache(root, out, fps=10, short_side=20, progress=False)
    return out


def _cfg(cache, **kw):
    return DataConfig(**{"window": 16, "crop": 16, "short_side": 20, "fps": 10.0, "cache": str(cache), **kw})


# -- mgtutor's jitter: the device path equals the per-clip path it replaced ---------------------------------


def per_clip_jitter(clip: torch.Tensor, strength: float) -> torch.Tensor:
    """The dataset's per-clip jitter as it was before clips went to the device as uint8 (kept here as the
    reference): three passes over one float clip (3, T, H, W), drawing torch.rand(3)."""
    brightness, contrast, saturation = ((torch.rand(3) * 2 - 1) * strength).tolist()
    grey = clip.mean(0)
    mean = grey.mean().item()
    clip.mul_((1 + contrast) * (1 + saturation)).add_(grey, alpha=-(1 + contrast) * saturation)
    return clip.add_(brightness - contrast * mean).clamp_(-1.0, 1.0)


def per_clip_item(dataset: WindowDataset, index: int) -> torch.Tensor:
    """The training clip as the dataset made it per clip on the CPU: random crop, float32, jitter, flip."""
    w = dataset.windows[index]
    frames = dataset._cached(dataset.sequences[w.sequence])
    size = dataset.cfg.crop
    top = int(torch.randint(0, frames.shape[1] - size + 1, ()))
    left = int(torch.randint(0, frames.shape[2] - size + 1, ()))
    crop = np.ascontiguousarray(frames[w.start : w.start + w.size, top : top + size, left : left + size].transpose(3, 0, 1, 2))
    clip = torch.from_numpy(crop).float().div_(127.5).sub_(1.0)
    clip = per_clip_jitter(clip, dataset.cfg.jitter)
    if dataset.cfg.flip and torch.rand(()) < 0.5:
        clip = clip.flip(-1)
    return clip


@pytest.mark.parametrize("flip", [False, True])
def test_device_jitter_equals_the_per_clip_jitter_for_the_same_draws(root, cache, flip):
    cfg = _cfg(cache, jitter=0.3, flip=flip)
    reference = WindowDataset(load_root(root), cfg, "train")
    device_path = WindowDataset(load_root(root), cfg, "train", uint8=True)
    indices = [0, 3, 5, len(device_path) - 1]
    torch.manual_seed(12)
    expected = torch.stack([per_clip_item(reference, i) for i in indices])
    torch.manual_seed(12)
    batch = collate([device_path[i] for i in indices])
    assert batch["clip"].dtype == torch.uint8 and batch["augment"].shape == (len(indices), len(PARAMETERS["jitter"]))
    got = model_inputs(batch, "cpu", "jitter")
    assert torch.equal(got, expected)  # bit for bit on the CPU
    if flip:  # some clips were mirrored, some not (seed 12)
        assert 0 < batch["augment"][:, -1].sum() < len(indices)


def test_jitter_matches_the_step_by_step_definition():
    clip = torch.rand(2, 3, 4, 5, 6) * 1.6 - 0.8
    params = torch.tensor([[0.2, -0.1, 0.25, 0.0], [-0.05, 0.3, -0.2, 0.0]])
    fast = augment_clips(clip.clone(), params, "jitter")
    for i, (brightness, contrast, saturation, _) in enumerate(params.tolist()):
        one = clip[i]
        grey = one.mean(0, keepdim=True)
        slow = grey + (one - grey) * (1 + saturation)  # saturation: away from (or towards) grey
        slow = slow.mean() + (slow - slow.mean()) * (1 + contrast) + brightness  # contrast around the mean, brightness
        torch.testing.assert_close(fast[i], slow.clamp(-1, 1))


def test_float_items_are_the_uint8_items_made_float_on_the_cpu(root, cache):
    cfg = _cfg(cache, jitter=0.2, flip=True)
    for split, kind in (("train", "jitter"), ("train", "pointtad"), ("test", "jitter")):
        cfg.augment = kind
        float_set = WindowDataset(load_root(root), cfg, split)
        uint8_set = WindowDataset(load_root(root), cfg, split, uint8=True)
        torch.manual_seed(5)
        expected = collate([float_set[i] for i in range(4)])["clip"]
        torch.manual_seed(5)
        batch = collate([uint8_set[i] for i in range(4)])
        assert ("augment" in batch) == (split == "train")
        assert batch["clip"].nbytes * 4 == expected.nbytes  # a quarter of the bytes to the device
        assert torch.equal(model_inputs(batch, "cpu", kind), expected)


def test_no_parameters_is_the_plain_conversion():
    clips = torch.randint(0, 256, (2, 3, 4, 5, 5), dtype=torch.uint8)
    assert torch.equal(augment_clips(clips, None, "pointtad"), clips.float() / 127.5 - 1)
    assert to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match=r"expected 'jitter' parameters of shape \(2, 4\)"):
        augment_clips(clips, torch.zeros(2, 3), "jitter")
    with pytest.raises(ConfigError, match="data.augment must be 'jitter' or 'pointtad'"):
        DataConfig(augment="mixup")


# -- PointTAD's augmentation ---------------------------------------------------------------------------------


def test_pointtad_draws_follow_its_probabilities_and_ranges():
    torch.manual_seed(0)
    draws = torch.stack([draw_parameters("pointtad", flip=True) for _ in range(4000)])
    p = dict(zip(PARAMETERS["pointtad"], draws.T))
    distorted = p["distort"] > 0.5
    assert abs(distorted.float().mean() - 0.5) < 0.03
    assert abs((p["angle"] != 0).float().mean() - 0.5) < 0.03 and p["angle"].abs().max() <= 45
    assert p["angle"].abs().max() > 44 and abs((p["flip"] > 0.5).float().mean() - 0.5) < 0.03
    # inside the distortion: each optional step half the time, hue always
    for name, identity in (("brightness", 0.0), ("contrast", 1.0), ("saturation", 1.0)):
        assert abs((p[name][distorted] != identity).float().mean() - 0.5) < 0.04, name
        assert (p[name][~distorted] == identity).all(), name
    assert p["brightness"].abs().max() <= 32 / 255 and p["contrast"].min() >= 0.5 and p["saturation"].max() <= 1.5
    assert (p["hue"][distorted] != 0).all() and p["hue"].abs().max() <= 18
    order = torch.stack([p["order_0"], p["order_1"], p["order_2"]], 1)
    assert (order.sort(1).values == torch.tensor([0.0, 1.0, 2.0])).all()
    assert abs((order[distorted] != torch.tensor([0.0, 1.0, 2.0])).any(1).float().mean() - 0.5 * 5 / 6) < 0.04
    # without data.flip no window is flipped, and no extra number is drawn for it
    torch.manual_seed(1)
    a = draw_parameters("pointtad", flip=False)
    after_a = torch.rand(())
    torch.manual_seed(1)
    b = draw_parameters("pointtad", flip=True)
    assert torch.equal(a[:-1], b[:-1]) and a[-1] == 0 and (b[-1] == 1.0) == bool(after_a < 0.5)


def reference_distortion(rgb: np.ndarray, q: dict[str, float]) -> np.ndarray:
    """PointTAD's photometric distortion of one pixel (r, g, b) in [0, 1], step by step with colorsys."""
    u = np.clip(rgb + q["brightness"], 0, 1)
    if q["contrast_first"]:
        u = np.clip(u * q["contrast"], 0, 1)
    h, s, v = colorsys.rgb_to_hsv(*u)
    h = (h * 360 + q["hue"]) % 360
    u = np.clip(colorsys.hsv_to_rgb(h / 360, s * q["saturation"], v), 0, 1)
    if not q["contrast_first"]:
        u = np.clip(u * q["contrast"], 0, 1)
    return u[[int(q["order_0"]), int(q["order_1"]), int(q["order_2"])]]


def test_pointtad_distortion_equals_a_per_pixel_reference():
    gen = torch.Generator().manual_seed(0)
    clips = torch.rand(3, 3, 2, 4, 5, generator=gen, dtype=torch.float64).float() * 2 - 1
    clips[0, :, 0, 0, 0] = torch.tensor([0.2, 0.2, 0.2])  # a grey pixel: no hue
    clips[1, :, 0, 0, 0] = torch.tensor([-1.0, -1.0, -1.0])  # black
    names = PARAMETERS["pointtad"]
    rows = [
        dict(distort=1, brightness=20 / 255, contrast_first=1, contrast=1.4, saturation=1.45, hue=17.0, order_0=2, order_1=0, order_2=1),
        dict(distort=1, brightness=-30 / 255, contrast_first=0, contrast=0.6, saturation=0.5, hue=-18.0, order_0=0, order_1=1, order_2=2),
        dict(distort=0, brightness=0.1, contrast_first=0, contrast=1.2, saturation=1.3, hue=5.0, order_0=1, order_1=0, order_2=2),
    ]  # fmt: skip
    params = torch.tensor([[float(row.get(name, 0.0)) for name in names] for row in rows])
    p = {name: params[:, i] for i, name in enumerate(names)}
    out = pointtad_distort(clips.clone(), p)
    assert torch.equal(out[2], clips[2])  # distort off: untouched
    for b in range(2):
        u = ((clips[b] + 1) / 2).double().numpy()
        expected = np.stack([reference_distortion(u[:, t, i, j], rows[b]) for t in range(2) for i in range(4) for j in range(5)])
        got = ((out[b] + 1) / 2).permute(1, 2, 3, 0).reshape(-1, 3).double().numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_hsv_round_trip_is_the_identity():
    rgb = torch.rand(2, 3, 7, 9)
    torch.testing.assert_close(augment.hsv_to_rgb(*augment.rgb_to_hsv(rgb)), rgb, rtol=0, atol=1e-6)


def reference_rotation(image: np.ndarray, degrees: float) -> np.ndarray:
    """OpenCV's warpAffine of ``getRotationMatrix2D(centre, -degrees)`` (PointTAD's ``imrotate``) with
    BORDER_REFLECT_101, in floating point: output (x, y) reads input centre + R(-angle) (x - centre)."""
    h, w = image.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a = math.radians(degrees)

    def reflect(i: int, n: int) -> int:  # ... c b | a b c ... | b a ...: the edge pixel is not repeated
        period = 2 * (n - 1)
        i = abs(i) % period
        return period - i if i > n - 1 else i

    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            sx = cx + math.cos(a) * (x - cx) + math.sin(a) * (y - cy)
            sy = cy - math.sin(a) * (x - cx) + math.cos(a) * (y - cy)
            x0, y0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - x0, sy - y0
            value = 0.0
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    value += wy * wx * image[reflect(y0 + dy, h), reflect(x0 + dx, w)]
            out[y, x] = value
    return out


def test_rotation_turns_clockwise_and_mirrors_the_border():
    clips = torch.zeros(1, 3, 2, 7, 7)
    clips[0, :, :, 3, 5] = 1.0  # right of the centre
    turned = rotate(clips.clone(), torch.tensor([90.0]))
    assert turned[0, 0, 0, 5, 3] == pytest.approx(1.0, abs=1e-5)  # clockwise: below the centre
    torch.testing.assert_close(turned, torch.rot90(clips, k=-1, dims=(-2, -1)), rtol=0, atol=1e-5)

    gen = torch.Generator().manual_seed(0)
    clips = torch.rand(2, 3, 2, 6, 9, generator=gen)
    angles = torch.tensor([33.0, -45.0])
    turned = rotate(clips.clone(), angles)
    for b, angle in enumerate(angles.tolist()):
        for c, t in ((0, 0), (2, 1)):
            expected = reference_rotation(clips[b, c, t].double().numpy(), angle)
            np.testing.assert_allclose(turned[b, c, t].numpy(), expected, rtol=0, atol=1e-4)
    assert torch.equal(rotate(clips.clone(), torch.zeros(2)), clips)


def test_flip_mirrors_only_the_chosen_clips():
    clips = torch.rand(3, 3, 2, 4, 5)
    out = hflip(clips.clone(), torch.tensor([True, False, True]))
    assert torch.equal(out[0], clips[0].flip(-1)) and torch.equal(out[1], clips[1]) and torch.equal(out[2], clips[2].flip(-1))


def test_pointtad_batch_applies_distortion_rotation_and_flip_in_order():
    gen = torch.Generator().manual_seed(2)
    clips = torch.randint(0, 256, (2, 3, 2, 6, 6), dtype=torch.uint8, generator=gen)
    torch.manual_seed(4)
    params = torch.stack([draw_parameters("pointtad", flip=True) for _ in range(2)])
    params[:, PARAMETERS["pointtad"].index("distort")] = 1.0
    params[:, PARAMETERS["pointtad"].index("angle")] = torch.tensor([10.0, 0.0])
    params[:, PARAMETERS["pointtad"].index("flip")] = torch.tensor([1.0, 1.0])
    p = {name: params[:, i] for i, name in enumerate(PARAMETERS["pointtad"])}
    expected = hflip(rotate(pointtad_distort(to_float(clips), p), p["angle"]), torch.tensor([True, True]))
    got = augment_clips(clips, params, "pointtad")
    assert torch.equal(got, expected) and got.min() >= -1 and got.max() <= 1


def test_the_trainer_reads_uint8_and_feeds_the_model_the_float_clip(root, cache):
    from mgtutor.config import Config, ModelConfig, TrainConfig
    from mgtutor.train.engine import build_trainer

    data = _cfg(cache, root=str(root), train_subjects=[1, 2], test_subjects=[2], jitter=0.3, flip=True)
    model = ModelConfig(encoder="small", hidden=16, queries=4, points=6, layers=1, heads=2, ffn=16, mix_dim=4, mamba_blocks=0)
    config = Config(data=data, model=model, train=TrainConfig(batch_size=3))
    trainer = build_trainer(config, progress=False)
    assert trainer.loader.dataset.uint8
    trainer.sampler.set_epoch(0)
    torch.manual_seed(9)
    batch = next(iter(trainer.loader))
    inputs, _ = trainer._to_device(batch)
    torch.manual_seed(9)
    float_set = WindowDataset(load_root(root, [1, 2]), data, "train")
    expected = collate([float_set[i] for i in list(trainer.sampler)[:3]])["clip"]
    assert batch["clip"].dtype == torch.uint8 and inputs.dtype == torch.float32
    assert torch.equal(inputs, expected)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_uint8_clips_from_a_worker_are_the_items(root, cache, batch_size):
    from torch.utils.data import DataLoader

    dataset = WindowDataset(load_root(root), _cfg(cache), "test", uint8=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=1, collate_fn=collate)
    batches = list(loader)
    clips = torch.cat([batch["clip"] for batch in batches])
    assert clips.dtype == torch.uint8 and len(clips) == len(dataset)
    assert torch.equal(clips, torch.stack([dataset[i]["clip"] for i in range(len(dataset))]))
    assert torch.equal(model_inputs(batches[0], "cpu"), collate([WindowDataset(load_root(root), _cfg(cache), "test")[i] for i in range(batch_size)])["clip"])


def test_the_pointtad_augmentation_configuration_differs_from_the_paper_only_there():
    from dataclasses import replace
    from pathlib import Path

    from mgtutor.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    paper, pointtad = load_config(configs / "smg_paper.yaml"), load_config(configs / "smg_paper_pointtad_augment.yaml")
    assert (paper.data.augment, paper.data.crop, paper.data.flip) == ("jitter", 224, False)
    assert (pointtad.data.augment, pointtad.data.crop, pointtad.data.flip) == ("pointtad", 192, True)
    assert replace(pointtad.data, augment="jitter", crop=224, flip=False) == paper.data
    assert pointtad.model == paper.model and replace(pointtad.train, out=paper.train.out) == paper.train
