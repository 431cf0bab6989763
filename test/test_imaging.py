"""sensor_msgs/Image field conversions (panoptic_ros.imaging): round trips, padding, byte order, bad input."""
import array

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from panoptic_ros.imaging import ENCODINGS, encoding_info, fields_to_image, image_to_fields, to_rgb

RNG = np.random.default_rng(0)


def random_image(encoding, h=5, w=7):
    info = ENCODINGS[encoding]
    shape = (h, w) if info.channels == 1 else (h, w, info.channels)
    if info.dtype.kind == "f":
        return RNG.standard_normal(shape).astype(info.dtype)
    lim = np.iinfo(info.dtype)
    return RNG.integers(lim.min, lim.max, size=shape, endpoint=True, dtype=info.dtype)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    img = random_image(encoding)
    fields = image_to_fields(img, encoding)
    assert fields["step"] == 7 * ENCODINGS[encoding].pixel_bytes
    assert len(fields["data"]) == fields["step"] * 5
    back = fields_to_image(**fields)
    assert back.dtype == img.dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)


def test_ros_required_encodings_present():
    for name in ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC2", "8UC3", "8UC4", "8SC1",
                 "16UC1", "16SC1", "32SC1", "32FC1", "64FC1"]:
        assert name in ENCODINGS
    assert encoding_info("32SC1").dtype == np.int32 and encoding_info("rgba8").channels == 4


def test_padded_step_is_dropped():
    img = random_image("rgb8", 4, 3)
    step = 3 * 3 + 5
    data = bytearray()
    for row in img:
        data += row.tobytes() + b"\xee" * 5
    out = fields_to_image(4, 3, "rgb8", 0, step, bytes(data))
    np.testing.assert_array_equal(out, img)


def test_big_endian_is_byteswapped_to_native():
    img = np.array([[1, 256, 65535]], dtype=np.uint16)
    big = img.astype(">u2").tobytes()
    out = fields_to_image(1, 3, "mono16", 1, 6, big)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, img)
    f32 = np.array([[1.5, -2.25]], dtype=np.float32)
    out = fields_to_image(1, 2, "32FC1", True, 8, f32.astype(">f4").tobytes())
    np.testing.assert_array_equal(out, f32)
    # The same bytes read as little endian give other numbers: the flag is honoured, not ignored.
    assert not np.array_equal(fields_to_image(1, 3, "mono16", 0, 6, big), img)


def test_big_endian_input_array_is_written_native():
    img = np.array([[1, 2], [3, 4]], dtype=">i4")
    fields = image_to_fields(img, "32SC1")
    np.testing.assert_array_equal(np.frombuffer(fields["data"], dtype=np.int32).reshape(2, 2), img)


def test_data_types_accepted():
    img = random_image("8UC3", 2, 2)
    raw = img.tobytes()
    for data in (raw, bytearray(raw), memoryview(raw), array.array("B", raw), np.frombuffer(raw, np.uint8),
                 list(raw)):
        np.testing.assert_array_equal(fields_to_image(2, 2, "8UC3", 0, 6, data), img)


def test_result_does_not_alias_message_buffer():
    buf = bytearray(range(6))
    out = fields_to_image(2, 3, "mono8", 0, 3, buf)
    buf[0] = 99
    assert out[0, 0] == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(encoding="RGB8"), "did you mean 'rgb8'"),
    (dict(encoding="rbg8"), "unknown image encoding"),
    (dict(encoding=None), "must be a string"),
    (dict(height=0), "positive"),
    (dict(width=-3), "positive"),
    (dict(height=2.0), "integer"),
    (dict(step=5), "shorter than one row"),
    (dict(data=b"\0" * 11), "expected step"),
    (dict(data=b"\0" * 13), "expected step"),
    (dict(is_bigendian=2), "is_bigendian"),
    (dict(data="abc"), "bytes"),
    (dict(data=[0, 1, 256, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "0..255"),
    (dict(data=np.zeros(3, np.float32)), "uint8"),
])
def test_malformed_fields_raise_clear_errors(kwargs, match):
    fields = dict(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=b"\0" * 12)
    fields.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fields_to_image(**fields)


def test_max_pixels_is_configurable():
    with pytest.raises(ValueError, match="max_pixels"):
        fields_to_image(100_000, 100_000, "mono8", 0, 100_000, b"")
    with pytest.raises(ValueError, match="max_pixels"):
        fields_to_image(4, 4, "mono8", 0, 4, b"\0" * 16, max_pixels=15)
    assert fields_to_image(4, 4, "mono8", 0, 4, b"\0" * 16, max_pixels=16).shape == (4, 4)


@pytest.mark.parametrize("array, encoding, match", [
    (np.zeros((2, 2, 3), np.float32), "rgb8", "dtype"),
    (np.zeros((2, 2), np.uint8), "rgb8", "shape"),
    (np.zeros((2, 2, 4), np.uint8), "rgb8", "shape"),
    (np.zeros((0, 2), np.uint8), "mono8", "positive"),
    (np.zeros((2, 2), np.int64), "32SC1", "dtype"),
    ([[1, 2]], "mono8", "numpy array"),
])
def test_image_to_fields_rejects_mismatch(array, encoding, match):
    with pytest.raises(ValueError, match=match):
        image_to_fields(array, encoding)


def test_to_rgb():
    rgb = random_image("rgb8")
    np.testing.assert_array_equal(to_rgb(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb(np.ascontiguousarray(rgb[..., ::-1]), "bgr8"), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 7, np.uint8)], -1)
    np.testing.assert_array_equal(to_rgb(bgra, "bgra8"), rgb)
    np.testing.assert_array_equal(to_rgb(rgb.astype(np.uint16) * 256 + 255, "rgb16"), rgb)
    mono = rgb[..., 0]
    np.testing.assert_array_equal(to_rgb(mono, "mono8"), np.stack([mono] * 3, -1))
    # yuv422 is U Y V Y, yuv422_yuy2 is Y U Y V: the same bytes are grey in one and coloured in the other
    # (video-range BT.601: Y = 200 -> 214).
    packed = np.full((2, 4, 2), 128, np.uint8)
    packed[..., 1] = 200
    np.testing.assert_allclose(to_rgb(packed, "yuv422"), 214, atol=1)
    assert np.ptp(to_rgb(packed, "yuv422_yuy2")[0, 0].astype(int)) > 50
    with pytest.raises(ValueError, match="not a colour"):
        to_rgb(np.zeros((2, 2), np.float32), "32FC1")
    with pytest.raises(ValueError, match="dtype"):
        to_rgb(np.zeros((2, 2, 3), np.uint16), "rgb8")


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_to_rgb_bayer_pattern_names_follow_ros(pattern):
    color = (200, 100, 30)
    mosaic = np.zeros((8, 8), np.uint8)
    for di in range(2):
        for dj in range(2):
            mosaic[di::2, dj::2] = color["rgb".index(pattern[2 * di + dj])]
    np.testing.assert_array_equal(to_rgb(mosaic, f"bayer_{pattern}8")[2:6, 2:6], np.broadcast_to(color, (4, 4, 3)))


# -- fuzzing: any field set gives either the right array or a ValueError ------------------------------------
ENCODING_NAMES = sorted(ENCODINGS)
bad_values = st.one_of(st.integers(-2**40, 2**40), st.integers(-3, 12), st.floats(allow_nan=True), st.booleans(),
                       st.none(), st.text(max_size=8), st.binary(max_size=64),
                       st.lists(st.integers(-5, 300), max_size=40))
FIELDS = ["height", "width", "encoding", "is_bigendian", "step", "data"]


@st.composite
def field_sets(draw):
    """A well-formed field set (random encoding, size, padding, byte order) with 0-3 fields corrupted."""
    encoding = draw(st.sampled_from(ENCODING_NAMES))
    info = ENCODINGS[encoding]
    height, width, pad = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(0, 5))
    step = width * info.pixel_bytes + pad
    payload = draw(st.binary(min_size=step * height, max_size=step * height))
    fields = dict(height=height, width=width, encoding=encoding, is_bigendian=draw(st.booleans()), step=step,
                  data=payload)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if name == "data" and draw(st.booleans()):  # off-by-a-few lengths are the common real bug
            cut = draw(st.integers(-8, 8))
            fields["data"] = payload[:cut] if cut < 0 else payload + b"\0" * cut
        elif name == "encoding":
            fields["encoding"] = draw(st.one_of(st.sampled_from(ENCODING_NAMES), st.text(max_size=8),
                                                st.sampled_from([e.upper() for e in ENCODING_NAMES])))
        else:
            fields[name] = draw(bad_values)
    return fields


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=field_sets())
def test_fuzz_fields_never_crash(fields):
    try:
        out = fields_to_image(**fields, max_pixels=10_000)
    except ValueError as err:
        event(f"ValueError: {str(err)[:22]}")
        return
    event("decoded")
    h, w, step, data = fields["height"], fields["width"], fields["step"], fields["data"]
    info = ENCODINGS[fields["encoding"]]
    assert out.dtype == info.dtype and out.dtype.isnative
    assert out.shape == ((h, w) if info.channels == 1 else (h, w, info.channels))
    raw = np.frombuffer(bytes(data), np.uint8)
    rows = raw.reshape(h, step)[:, : w * info.pixel_bytes]
    expected = rows.copy().view(info.dtype.newbyteorder(">" if fields["is_bigendian"] else "<"))
    np.testing.assert_array_equal(out.reshape(h, -1), expected.astype(info.dtype))
