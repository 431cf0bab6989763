"""sensor_msgs/Image fields <-> numpy arrays, in pure numpy (no ROS import), used by the node and the bags.

One table (:data:`ENCODINGS`) maps every ``sensor_msgs/image_encodings`` name with a fixed pixel layout to
its numpy dtype and channel count. :func:`fields_to_image` validates the message fields (encoding, sizes,
step, data length, byte order) and raises :class:`ValueError` saying what is wrong, instead of returning a
silently garbled image; :func:`image_to_fields` is its inverse; :func:`to_rgb` turns colour encodings into
the core's RGB ``uint8`` images.

Written by hand rather than with cv_bridge because cv_bridge needs a ROS install and OpenCV's C++ glue;
this module must run in the ROS-free core and in bag tools.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MAX_PIXELS = 1 << 27  # 134 M pixels (e.g. 16384 x 8192): far above any camera, below a memory bomb
NATIVE_BIGENDIAN = sys.byteorder == "big"


@dataclass(frozen=True)
class Encoding:
    name: str
    dtype: np.dtype
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


def _table() -> dict[str, Encoding]:
    table: dict[str, Encoding] = {}

    def add(name: str, dtype, channels: int) -> None:
        table[name] = Encoding(name, np.dtype(dtype), channels)

    for prefix, dtype in (("8U", np.uint8), ("8S", np.int8), ("16U", np.uint16), ("16S", np.int16),
                          ("32S", np.int32), ("32F", np.float32), ("64F", np.float64)):
        for c in (1, 2, 3, 4):
            add(f"{prefix}C{c}", dtype, c)
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        add(f"rgb{bits}", dtype, 3)
        add(f"bgr{bits}", dtype, 3)
        add(f"rgba{bits}", dtype, 4)
        add(f"bgra{bits}", dtype, 4)
        add(f"mono{bits}", dtype, 1)
        for pattern in ("rggb", "bggr", "gbrg", "grbg"):
            add(f"bayer_{pattern}{bits}", dtype, 1)
    add("yuv422", np.uint8, 2)  # UYVY
    add("yuv422_yuy2", np.uint8, 2)  # YUYV
    return table


ENCODINGS: dict[str, Encoding] = _table()

# OpenCV conversions for the raw camera encodings. OpenCV names a Bayer pattern by the 2x2 block starting
# at pixel (1, 1), so ROS's rggb is OpenCV's "BG" (the mapping cv_bridge uses).
_CV2_TO_RGB = {
    "bayer_rggb8": "COLOR_BayerBG2RGB", "bayer_bggr8": "COLOR_BayerRG2RGB",
    "bayer_gbrg8": "COLOR_BayerGR2RGB", "bayer_grbg8": "COLOR_BayerGB2RGB",
    "yuv422": "COLOR_YUV2RGB_UYVY", "yuv422_yuy2": "COLOR_YUV2RGB_YUYV",
}


def encoding_info(encoding: Any) -> Encoding:
    """The table entry of ``encoding``; ValueError naming the closest known encodings otherwise."""
    if not isinstance(encoding, str):
        raise ValueError(f"image encoding must be a string, got {type(encoding).__name__} {encoding!r}")
    info = ENCODINGS.get(encoding)
    if info is None:
        close = difflib.get_close_matches(encoding, ENCODINGS, n=3, cutoff=0.5)
        if not close:
            close = [k for k in ENCODINGS if k.lower() == encoding.lower()]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown image encoding {encoding!r}{hint} (known: {', '.join(sorted(ENCODINGS))})")
    return info


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"image {name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def _as_bytes(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat uint8 array without copying when possible."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"image data must be uint8 bytes, got a {data.dtype} array")
        return data.reshape(-1)
    if isinstance(data, (list, tuple)):
        arr = np.asarray(data)
        if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255):
            raise ValueError("image data given as a list must hold integers 0..255")
        return arr.astype(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        raise ValueError(f"image data must be contiguous bytes, got {type(data).__name__}") from None


def fields_to_image(height: Any, width: Any, encoding: Any, is_bigendian: Any, step: Any, data: Any,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` as a new native-byte-order array.

    Returns ``(height, width)`` for one-channel encodings, ``(height, width, channels)`` otherwise, with
    the encoding's dtype. Handles row padding (``step`` larger than a row) and big-endian data.

    Raises:
        ValueError: unknown encoding, non-integer or non-positive sizes, more than ``max_pixels`` pixels,
            ``step`` shorter than a row, or ``data`` not exactly ``step * height`` bytes long.
    """
    info = encoding_info(encoding)
    h, w, s = _as_int("height", height), _as_int("width", width), _as_int("step", step)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got height={h} width={w}")
    if h * w > max_pixels:
        raise ValueError(f"image of {w}x{h} = {h * w} pixels exceeds max_pixels={max_pixels}")
    if isinstance(is_bigendian, (bool, np.bool_)) or (isinstance(is_bigendian, (int, np.integer))
                                                      and int(is_bigendian) in (0, 1)):
        big = bool(is_bigendian)
    else:
        raise ValueError(f"image is_bigendian must be 0 or 1, got {is_bigendian!r}")
    row_bytes = w * info.pixel_bytes
    if s < row_bytes:
        raise ValueError(f"image step {s} is shorter than one row of {w} {encoding} pixels ({row_bytes} bytes)")
    buf = _as_bytes(data)
    if buf.size != s * h:
        raise ValueError(f"image data has {buf.size} bytes, expected step * height = {s} * {h} = {s * h}")
    # Copy the rows into a fresh buffer: drops the padding and detaches from the message's memory.
    rows = buf.reshape(h, s)[:, :row_bytes].copy()
    pixels = rows.view(info.dtype.newbyteorder(">" if big else "<"))
    if not pixels.dtype.isnative:
        pixels = pixels.astype(info.dtype)
    shape = (h, w) if info.channels == 1 else (h, w, info.channels)
    return pixels.reshape(shape)


def image_to_fields(array: np.ndarray, encoding: str) -> dict:
    """``sensor_msgs/Image`` fields (height, width, encoding, is_bigendian, step, data) of ``array``.

    ``array`` must have the encoding's dtype and shape ``(H, W)`` / ``(H, W, 1)`` for one channel or
    ``(H, W, C)`` for C channels; nothing is converted implicitly.
    """
    info = encoding_info(encoding)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(array).__name__}")
    if array.dtype.newbyteorder("=") != info.dtype and array.dtype != info.dtype:
        raise ValueError(f"encoding {encoding!r} needs dtype {info.dtype}, got {array.dtype}")
    if info.channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    expected_ndim = 2 if info.channels == 1 else 3
    if array.ndim != expected_ndim or (info.channels > 1 and array.shape[2] != info.channels):
        want = "(H, W)" if info.channels == 1 else f"(H, W, {info.channels})"
        raise ValueError(f"encoding {encoding!r} needs an array of shape {want}, got {array.shape}")
    h, w = array.shape[:2]
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {array.shape}")
    native = np.ascontiguousarray(array, dtype=info.dtype)  # also byteswaps a non-native array
    return {"height": int(h), "width": int(w), "encoding": encoding, "is_bigendian": int(NATIVE_BIGENDIAN),
            "step": int(w * info.pixel_bytes), "data": native.tobytes()}


def to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """An ``(H, W, 3) uint8`` RGB image from a colour (or mono) image of the given encoding.

    16-bit encodings keep their high byte; alpha is dropped; mono is repeated into three channels;
    Bayer 8-bit and YUV 4:2:2 are converted with OpenCV. Other encodings raise ValueError.
    """
    info = encoding_info(encoding)
    name = info.name
    if name in _CV2_TO_RGB:
        import cv2  # only needed for raw camera encodings

        expected = array.shape[:2] + ((2,) if info.channels == 2 else ())
        if array.dtype != np.uint8 or array.shape != expected:
            raise ValueError(f"{name} image must be uint8 of shape {expected}, got {array.dtype} {array.shape}")
        if info.channels == 2 and array.shape[1] % 2:
            raise ValueError(f"{name} image width must be even (4:2:2 shares chroma between pixel pairs), "
                             f"got {array.shape[1]}")
        return cv2.cvtColor(np.ascontiguousarray(array), getattr(cv2, _CV2_TO_RGB[name]))
    if not (name.startswith(("rgb", "bgr", "mono")) and name[-1].isdigit()):
        raise ValueError(f"cannot turn a {name!r} image into RGB: it is not a colour encoding")
    if array.dtype != info.dtype:
        raise ValueError(f"encoding {name!r} needs dtype {info.dtype}, got {array.dtype}")
    if name.startswith("mono"):
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise ValueError(f"{name} image must be (H, W), got {array.shape}")
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] != info.channels:
        raise ValueError(f"{name} image must be (H, W, {info.channels}), got {array.shape}")
    rgb = array[..., :3]
    if name.startswith("bgr"):
        rgb = rgb[..., ::-1]
    if info.dtype == np.uint16:
        rgb = rgb >> 8
    return np.ascontiguousarray(rgb, dtype=np.uint8)
