"""sensor_msgs/Image and CompressedImage <-> numpy, on top of the ROS-free :mod:`panoptic_ros.imaging`.

The table in ``imaging`` covers every fixed-layout encoding exactly and validates the message; cv_bridge (when
a ROS install provides it) is only asked for encodings outside that table. The ROS 2 cv_bridge is not on
PyPI, and cv_bridge would add a C++ dependency for layouts the table already handles.
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..imaging import ENCODINGS, fields_to_image, image_to_fields, to_rgb

try:  # only for exotic encodings (e.g. nv21) a ROS install's cv_bridge knows
    from cv_bridge import CvBridge as _CvBridge
except Exception:  # noqa: BLE001 - absent, or a broken ROS 1 copy from PyPI
    _CvBridge = None


def image_to_numpy(msg: Image) -> np.ndarray:
    """The pixels of ``msg`` as an array of the encoding's dtype: (H, W) or (H, W, C). ValueError if malformed."""
    return fields_to_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


def image_to_rgb(msg: Image) -> np.ndarray:
    """``msg`` as the core's (H, W, 3) uint8 RGB image (colour, mono, Bayer and YUV 4:2:2 encodings)."""
    if msg.encoding not in ENCODINGS and _CvBridge is not None:
        return np.ascontiguousarray(_CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    return to_rgb(image_to_numpy(msg), msg.encoding)


def numpy_to_image(array_: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """A sensor_msgs/Image of ``array_`` (its dtype and shape must match ``encoding``; nothing is converted)."""
    fields = image_to_fields(array_, encoding)
    msg = Image(header=header if header is not None else Header(), height=fields["height"],
                width=fields["width"], encoding=fields["encoding"], is_bigendian=fields["is_bigendian"],
                step=fields["step"])
    # array.array from bytes is one memcpy; the generated setter would check a bytes object per element.
    msg.data = array.array("B", fields["data"])
    return msg


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a CompressedImage (jpeg / png, as image_transport's compressed plugin sends) to RGB uint8."""
    import cv2

    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, array.array) else msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ValueError(f"compressed image (format {msg.format!r}) has no data")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # BGR, 3 channels, whatever the stored depth / channels
    if image is None:
        raise ValueError(f"cannot decode compressed image of format {msg.format!r} ({buf.size} bytes)")
    return np.ascontiguousarray(image[..., ::-1])


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None,
                      quality: int = 90) -> CompressedImage:
    """Encode an RGB uint8 image as image_transport's compressed plugin does (format 'rgb8; jpeg compressed bgr8')."""
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    ext = {"jpeg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ValueError(f"unknown compression {fmt!r}; choose jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage(header=header if header is not None else Header(), format=f"rgb8; {fmt} compressed bgr8")
    msg.data = array.array("B", buf.tobytes())
    return msg
