"""Imaging conditions a vehicle camera meets: fog / haze by distance, dusk and night, low contrast, defocus and
motion blur, sensor noise, rain streaks.

``Conditions`` describes one condition; :func:`apply` renders it onto a linear float image with its per-pixel
distance (the world calls it before quantising, so fog follows the scene's true depth); :data:`PRESETS` names the
conditions of the robustness suite; ``"mixed"`` draws a random condition per frame for training data
(:func:`sample_mixed`); :func:`photometric_jitter` is the training-time augmentation built from the same pieces
(no depth, so its haze is uniform).

Order follows the imaging chain: the atmosphere (fog) and the scene's light first, then the optics (defocus,
motion), then the sensor (noise, read after the exposure gain so dark frames are noisy), then the camera's tone
curve (contrast, gamma).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Conditions:
    """One imaging condition; the defaults change nothing (the world's clear day)."""

    fog_density: float = 0.0  # extinction per metre (Koschmieder): a pixel at distance d keeps exp(-k d) of its light
    fog_gray: float = 200.0  # airlight level the fog fades to (0-255)
    light: float = 1.0  # scene illumination gain (dusk 0.35, night 0.22)
    noise: float = 0.0  # extra sensor noise, std as a fraction of full scale, added after the light gain
    blur_sigma: float = 0.0  # defocus, Gaussian sigma in pixels at the rendered size
    motion_blur_px: float = 0.0  # horizontal motion streak length, pixels
    contrast: float = 1.0  # tone-curve contrast around mid grey (0.5 = half)
    gamma: float = 1.0  # tone-curve gamma (> 1 darkens mid tones)
    rain: float = 0.0  # rain-streak density, 0-1

    def __post_init__(self):
        checks = {"fog_density": (0.0, 1.0), "fog_gray": (0.0, 255.0), "light": (0.01, 4.0), "noise": (0.0, 0.5),
                  "blur_sigma": (0.0, 20.0), "motion_blur_px": (0.0, 64.0), "contrast": (0.05, 4.0),
                  "gamma": (0.2, 5.0), "rain": (0.0, 1.0)}
        for name, (lo, hi) in checks.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"condition {name}={value} is outside {lo:g}..{hi:g}")

    @property
    def is_clear(self) -> bool:
        return self == Conditions()

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Conditions] = {
    "clear": Conditions(),
    "haze": Conditions(fog_density=0.005),
    "fog": Conditions(fog_density=0.02),
    "dense_fog": Conditions(fog_density=0.05),
    "dusk": Conditions(light=0.35, noise=0.03, gamma=1.2),
    "night": Conditions(light=0.22, noise=0.05, gamma=1.15),
    "low_contrast": Conditions(contrast=0.5),
    "defocus": Conditions(blur_sigma=1.5),
    "motion_blur": Conditions(motion_blur_px=9.0),
    "noise": Conditions(noise=0.08),
    "rain": Conditions(rain=0.5, contrast=0.8, blur_sigma=0.6),
}
MIXED = "mixed"


def preset(name: str) -> Conditions:
    """The named condition (``PRESETS``); a clear one-line error otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown condition {name!r}; known: {', '.join(PRESETS)} (or {MIXED!r})") from None


def sample_mixed(rng: np.random.Generator, clear_fraction: float = 0.35) -> Conditions:
    """A random condition for training data: clear with ``clear_fraction``, else one or two adverse effects at
    a random severity up to beyond the robustness suite's (so the suite's levels lie inside the training range)."""
    if rng.random() < clear_fraction:
        return Conditions()
    effects = {
        "fog": lambda: dict(fog_density=float(np.exp(rng.uniform(np.log(0.003), np.log(0.06)))),
                            fog_gray=float(rng.uniform(150, 230))),
        "dark": lambda: dict(light=float(rng.uniform(0.15, 0.6)), noise=float(rng.uniform(0.01, 0.06)),
                             gamma=float(rng.uniform(1.0, 1.4))),
        "contrast": lambda: dict(contrast=float(rng.uniform(0.35, 0.9))),
        "defocus": lambda: dict(blur_sigma=float(rng.uniform(0.5, 2.2))),
        "motion": lambda: dict(motion_blur_px=float(rng.uniform(3, 14))),
        "noise": lambda: dict(noise=float(rng.uniform(0.03, 0.11))),
        "rain": lambda: dict(rain=float(rng.uniform(0.2, 0.8)), contrast=float(rng.uniform(0.7, 0.95))),
        "bright": lambda: dict(light=float(rng.uniform(1.2, 1.7))),
    }
    names = list(effects)
    picked = rng.choice(len(names), size=1 + int(rng.random() < 0.3), replace=False)
    params: dict = {}
    for k in picked:
        params.update(effects[names[k]]())
    return Conditions(**params)


def apply(image: np.ndarray, distance: np.ndarray | None, cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W, 3) float32 linear 0-255 under ``cond``; ``distance`` (H, W) metres along the ray
    (``inf`` = sky), needed only for fog. Returns a new float32 image (not clipped)."""
    img = np.asarray(image, np.float32).copy()
    if cond.fog_density > 0:
        if distance is None:
            raise ValueError("fog needs the per-pixel distance")
        transmission = np.exp(-cond.fog_density * np.minimum(distance, 1e4)).astype(np.float32)[..., None]
        img = img * transmission + cond.fog_gray * (1.0 - transmission)
    if cond.light != 1.0:
        img *= cond.light
    if cond.rain > 0:
        img = _rain(img, cond.rain, rng)
    if cond.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), cond.blur_sigma)
    if cond.motion_blur_px >= 1:
        n = int(round(cond.motion_blur_px))
        img = cv2.filter2D(img, -1, np.full((1, n), 1.0 / n, np.float32))
    if cond.noise > 0:
        img += rng.normal(0.0, 255.0 * cond.noise, img.shape).astype(np.float32)
    if cond.contrast != 1.0 or cond.gamma != 1.0:
        x = np.clip(img / 255.0, 0.0, 1.0)
        if cond.gamma != 1.0:
            x = x ** cond.gamma
        img = 255.0 * (0.5 + cond.contrast * (x - 0.5))
    return img


def _rain(img: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Bright, slightly slanted streaks (drops near the lens, motion-blurred), blended over the image."""
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.float32)
    n = int(density * h * w / 400)
    length = max(4, h // 12)
    x0 = rng.integers(0, w, n)
    y0 = rng.integers(-length, h, n)
    slant = rng.normal(0.15, 0.05)
    for x, y in zip(x0, y0):  # a few hundred short lines; cv2.line is the cheap way to draw them
        cv2.line(layer, (int(x), int(y)), (int(x + slant * length), int(y + length)), 1.0, 1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.7)[..., None] * 0.55
    return img * (1.0 - layer) + 220.0 * layer


def photometric_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Training augmentation on a uint8 RGB image: random exposure, contrast, gamma, uniform haze, blur and noise
    (each with some probability), the same effects as :func:`apply` without depth. Returns uint8."""
    s = float(strength)
    params = {}
    if rng.random() < 0.5 * s:
        params["light"] = float(np.exp(rng.uniform(np.log(0.4), np.log(1.5))))
    if rng.random() < 0.4 * s:
        params["contrast"] = float(rng.uniform(0.5, 1.2))
    if rng.random() < 0.3 * s:
        params["gamma"] = float(rng.uniform(0.75, 1.35))
    if rng.random() < 0.25 * s:
        params["blur_sigma"] = float(rng.uniform(0.4, 1.8))
    if rng.random() < 0.3 * s:
        params["noise"] = float(rng.uniform(0.01, 0.07))
    cond = Conditions(**params)
    img = image.astype(np.float32)
    if rng.random() < 0.2 * s:  # uniform haze: fog at one distance for the whole frame
        t = float(rng.uniform(0.55, 0.95))
        img = img * t + float(rng.uniform(150, 230)) * (1.0 - t)
    if not cond.is_clear:
        img = apply(img, None, cond, rng)
    return np.clip(img, 0, 255).astype(np.uint8)
