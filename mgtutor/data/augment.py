"""Training augmentation of clips: parameters drawn per window on the CPU, applied to whole batches on
the training device.

Glossary: b windows in a batch, c = 3 colour channels (RGB), t frames, h x w pixels, k parameters a window.

The path of a training clip: a dataset worker crops the window from the frame cache and hands over the
uint8 crop ``(c, t, h, w)`` with its parameters ``(k,)``, a few numbers drawn by :func:`draw_parameters`
from torch's global random generator (the training engine seeds every worker per epoch, so a resumed run
draws the same numbers). The training device then turns the uint8 batch into the model's input with
:func:`augment_clips`: float32 in [-1, 1] (:func:`to_float`, ``x / 127.5 - 1``), then the augmentation as
batched tensor operations. A uint8 crop is a quarter of the bytes of its float32 clip, and the float
passes over 19 million values a window (128 x 224 x 224 x 3) run where they are cheap.

Two augmentations, chosen by ``data.augment``:

``"jitter"`` (mgtutor's paper configuration): one brightness ``b``, contrast ``c`` and saturation ``s``
change for the whole clip, each uniform in ``[-data.jitter, data.jitter]``. Saturation blends each pixel
with its grey ``g`` (the mean of its channels), contrast scales around the clip's mean grey ``m`` (which
the saturation change leaves as it is), brightness shifts::

    x' = clamp((1 + c)(1 + s) x - (1 + c) s g - c m + b, -1, 1)

``"pointtad"``: PointTAD's training transforms after its random crop (MCG-NJU/PointTAD,
``datasets/dataset.py`` ``training_transforms``; ``datasets/transforms.py`` ``GroupPhotoMetricDistortion``
and ``GroupRotate``). On half the windows, the photometric distortion, in PointTAD's [0, 255] units and
clipped to that range after every step: brightness ``+ U(-32, 32)`` (half the time); contrast
``* U(0.5, 1.5)`` (half the time), either before or after the colour change (even odds); in HSV,
saturation ``* U(0.5, 1.5)`` (half the time) and hue ``+ U(-18, 18)`` degrees; then the three channels in
a random order (half the time). On half the windows, independently, a rotation by ``U(-45, 45)`` degrees
about the frame's centre (bilinear, the border mirrored as OpenCV's ``BORDER_REFLECT_101``).

Both flip half the windows horizontally when ``data.flip`` is set (PointTAD always flips; mgtutor's
default does not, since some micro-gestures are side-specific).
"""

from __future__ import annotations

import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

AugmentKind = Literal["jitter", "pointtad"]  # data.augment
KINDS: tuple[str, ...] = typing.get_args(AugmentKind)

# The parameters of one window, in order. Each defaults to the value that changes nothing.
PARAMETERS = {
    "jitter": ("brightness", "contrast", "saturation", "flip"),
    "pointtad": (
        "distort", "brightness", "contrast_first", "contrast", "saturation", "hue",
        "order_0", "order_1", "order_2", "angle", "flip",
    ),
}  # fmt: skip

# PointTAD's settings (datasets/dataset.py, training_transforms); brightness in [0, 255] units
POINTTAD_BRIGHTNESS = 32.0
POINTTAD_CONTRAST = (0.5, 1.5)
POINTTAD_SATURATION = (0.5, 1.5)
POINTTAD_HUE = 18.0  # degrees
POINTTAD_ROTATION = 45.0  # degrees


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"data.augment must be one of {KINDS}, got {kind!r}")


def _coin() -> bool:
    return bool(torch.rand(()) < 0.5)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def draw_parameters(kind: str, jitter: float = 0.0, flip: bool = False) -> torch.Tensor:
    """One window's random parameters ``(k,)`` float32, named by ``PARAMETERS[kind]``, drawn from torch's
    global generator (in a DataLoader worker: the worker's, which the training engine seeds).

    ``"jitter"`` draws ``torch.rand(3)`` when ``jitter > 0``, then one number for the flip when ``flip``:
    the draws, in order, of mgtutor's per-clip jitter before the device path existed.
    """
    _check_kind(kind)
    values = dict.fromkeys(PARAMETERS[kind], 0.0)
    if kind == "jitter":
        if jitter > 0:
            values["brightness"], values["contrast"], values["saturation"] = ((torch.rand(3) * 2 - 1) * jitter).tolist()
    else:
        values.update(contrast=1.0, saturation=1.0, order_0=0.0, order_1=1.0, order_2=2.0)
        if _coin():
            values["distort"] = 1.0
            if _coin():
                values["brightness"] = _uniform(-POINTTAD_BRIGHTNESS, POINTTAD_BRIGHTNESS) / 255
            values["contrast_first"] = float(_coin())
            if _coin():
                values["contrast"] = _uniform(*POINTTAD_CONTRAST)
            if _coin():
                values["saturation"] = _uniform(*POINTTAD_SATURATION)
            values["hue"] = _uniform(-POINTTAD_HUE, POINTTAD_HUE)
            if _coin():
                values["order_0"], values["order_1"], values["order_2"] = torch.randperm(3).tolist()
        if _coin():
            values["angle"] = _uniform(-POINTTAD_ROTATION, POINTTAD_ROTATION)
    if flip:
        values["flip"] = float(_coin())
    return torch.tensor(list(values.values()), dtype=torch.float32)


def to_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1], ``x / 127.5 - 1`` (I3D's input range), any shape."""
    return clips.float().div_(127.5).sub_(1.0)


def augment_clips(clips: torch.Tensor, params: torch.Tensor | None, kind: str) -> torch.Tensor:
    """The model's input from a batch of crops: ``(b, c, t, h, w)`` uint8 (or float in [-1, 1]) and
    ``params`` ``(b, k)`` from :func:`draw_parameters` (None: no augmentation) -> float32 ``(b, c, t, h, w)``
    in [-1, 1] on the clips' device.

    ``params`` may stay on the CPU: the per-window coefficients are computed there and only ``b`` numbers
    a coefficient travel, so choosing which windows to rotate or flip never waits for the device. A float
    input is changed in place.
    """
    _check_kind(kind)
    # uint8 clips may arrive as channels-first views of channels-last memory: transpose them while still uint8
    x = to_float(clips.contiguous()) if clips.dtype == torch.uint8 else clips.float().contiguous()
    if params is None:
        return x
    names = PARAMETERS[kind]
    if params.ndim != 2 or params.shape != (x.shape[0], len(names)):
        raise ValueError(f"expected {kind!r} parameters of shape ({x.shape[0]}, {len(names)}) ({', '.join(names)}), got {tuple(params.shape)}")
    p = {name: params[:, i].cpu() for i, name in enumerate(names)}
    if kind == "jitter":
        x = jitter_(x, p["brightness"], p["contrast"], p["saturation"])
    else:
        x = pointtad_distort(x, p)
        x = rotate(x, p["angle"])
    return hflip(x, p["flip"] > 0.5)


def _per_window(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(b,) CPU values -> (b, 1, 1, 1, 1) float32 on ``like``'s device, to broadcast over a clip."""
    return values.to(torch.float32).to(like.device, non_blocking=True).view(-1, 1, 1, 1, 1)


def jitter_(clips: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """mgtutor's photometric jitter of each clip, in place (module docstring for the equation).

    clips (b, c, t, h, w) float in [-1, 1]; brightness, contrast, saturation (b,). The coefficients are
    computed in float64 and rounded once to float32, as the per-clip version did with Python numbers.
    """
    b, c, s = (v.to(torch.float64) for v in (brightness, contrast, saturation))
    grey = clips.mean(1, keepdim=True)  # (b, 1, t, h, w): g
    mean = grey.mean((2, 3, 4), keepdim=True)  # (b, 1, 1, 1, 1): m
    wide = torch.float32 if clips.device.type == "mps" else torch.float64  # MPS has no float64
    shift = (_per_window(b, clips).to(wide) - _per_window(c, clips).to(wide) * mean.to(wide)).to(torch.float32)
    clips.mul_(_per_window((1 + c) * (1 + s), clips)).addcmul_(grey, _per_window(-(1 + c) * s, clips))
    return clips.add_(shift).clamp_(-1.0, 1.0)


def rgb_to_hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(b, 3, ...) RGB in [0, 1] -> hue in degrees [0, 360), saturation and value, each (b, ...)
    (OpenCV's float ``COLOR_RGB2HSV``; ``colorsys.rgb_to_hsv`` with hue in degrees)."""
    r, g, b = rgb.unbind(1)
    value = rgb.amax(1)
    spread = value - rgb.amin(1)
    saturation = torch.where(value > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = spread.clamp_min(1e-12)
    hue = torch.where(value == r, (g - b) / safe, torch.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(spread > 0, torch.remainder(60 * hue, 360), torch.zeros_like(hue))
    return hue, saturation, value


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_hsv`: (b, ...) each -> (b, 3, ...). Channel ``n`` (5 for red, 3 for
    green, 1 for blue) is ``v - v s clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + hue / 60) mod 6``, the
    six-sector formula in one expression; a saturation above 1 is used as it is (OpenCV does the same)."""
    n = torch.tensor([5.0, 3.0, 1.0], device=hue.device).view(1, 3, *([1] * (hue.ndim - 1)))
    k = torch.remainder(n + (hue / 60).unsqueeze(1), 6)
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return value.unsqueeze(1) * (1 - saturation.unsqueeze(1) * ramp)


def pointtad_distort(clips: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """PointTAD's photometric distortion (module docstring) of the windows whose ``distort`` is set.

    clips (b, c, t, h, w) float in [-1, 1]; ``p``: the ``"pointtad"`` parameters, each (b,) on the CPU.
    Works in [0, 1] (PointTAD's [0, 255] over 255) and returns to [-1, 1].
    """
    chosen = torch.nonzero(p["distort"] > 0.5).flatten()
    if len(chosen) == 0:
        return clips
    q = {name: value[chosen] for name, value in p.items()}
    u = (clips[chosen.to(clips.device)] + 1) * 0.5

    def contrast(u: torch.Tensor, when: torch.Tensor) -> torch.Tensor:
        alpha = torch.where(when, q["contrast"], torch.ones_like(q["contrast"]))
        return (u * _per_window(alpha, u)).clamp_(0, 1)

    u = (u + _per_window(q["brightness"], u)).clamp_(0, 1)
    u = contrast(u, q["contrast_first"] > 0.5)
    hue, saturation, value = rgb_to_hsv(u)
    hue = torch.remainder(hue + _per_window(q["hue"], u)[:, 0], 360)
    saturation = saturation * _per_window(q["saturation"], u)[:, 0]
    u = hsv_to_rgb(hue, saturation, value).clamp_(0, 1)
    u = contrast(u, q["contrast_first"] < 0.5)
    order = torch.stack([q["order_0"], q["order_1"], q["order_2"]], dim=1).long().to(u.device)  # (b, 3)
    u = torch.gather(u, 1, order.view(-1, 3, 1, 1, 1).expand_as(u))
    out = clips.clone()
    out[chosen.to(clips.device)] = u * 2 - 1
    return out


def rotate(clips: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate every frame of each clip by its angle (positive: clockwise as displayed) about the frame's
    centre, bilinear, the border mirrored without repeating the edge pixel (OpenCV's
    ``BORDER_REFLECT_101``, PointTAD's ``border_mode='reflect101'``).

    clips (b, c, t, h, w); degrees (b,) on the CPU, 0 leaves a clip untouched. Output pixel ``o`` reads
    input ``centre + R(-angle) (o - centre)``, in pixels, with ``affine_grid``'s corner-aligned coordinates.
    """
    chosen = torch.nonzero(degrees != 0).flatten()
    if len(chosen) == 0:
        return clips
    _, c, t, h, w = clips.shape
    angle = degrees[chosen].to(torch.float64) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    # normalised x spans (w - 1) pixels, y (h - 1): the off-diagonal terms carry the aspect ratio
    theta = torch.stack([
        torch.stack([cos, sin * (h - 1) / max(w - 1, 1), zero], dim=1),
        torch.stack([-sin * (w - 1) / max(h - 1, 1), cos, zero], dim=1),
    ], dim=1).to(torch.float32).to(clips.device)  # fmt: skip
    index = chosen.to(clips.device)
    frames = rearrange(clips[index], "b c t h w -> b (c t) h w")
    grid = F.affine_grid(theta, list(frames.shape), align_corners=True)
    turned = F.grid_sample(frames, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    out = clips.clone()
    out[index] = rearrange(turned, "b (c t) h w -> b c t h w", c=c, t=t)
    return out


def hflip(clips: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the clips whose ``flip`` (b,) bool, on the CPU, is set, left to right (the w axis)."""
    chosen = torch.nonzero(flip).flatten()
    if len(chosen) == 0:
        return clips
    index = chosen.to(clips.device)
    clips[index] = clips[index].flip(-1)
    return clips
