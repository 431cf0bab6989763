"""panoptic-replay: a bag written with rosbags is played into DDS and recorded by a listener process."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

from panoptic_ros.data.bag import LATCHED_QOS, SENSOR_QOS, typestore  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]
LISTENER = Path(__file__).with_name("_ros_listener.py")
N_IMAGES, PERIOD_NS, T0 = 8, 100_000_000, 1_700_000_000_000_000_000


def write_bag(path: Path, storage: str) -> list[bytes]:
    """8 rgb8 images at 10 Hz on /camera/image_raw and one latched std_msgs/String on /meta; returns the image CDR."""
    store = typestore()
    Image, Header, Time, String = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                             "builtin_interfaces/msg/Time", "std_msgs/msg/String"))
    rng = np.random.default_rng(0)
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    raws = []
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        meta = writer.add_connection("/meta", "std_msgs/msg/String", typestore=store, offered_qos_profiles=[LATCHED_QOS])
        image = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store,
                                      offered_qos_profiles=[SENSOR_QOS])
        writer.write(meta, T0, store.serialize_cdr(String(data="drive 1"), "std_msgs/msg/String"))
        for k in range(N_IMAGES):
            t = T0 + k * PERIOD_NS
            pixels = rng.integers(0, 256, 24 * 32 * 3, dtype=np.uint8)
            msg = Image(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="cam"), height=24,
                        width=32, encoding="rgb8", is_bigendian=0, step=96, data=pixels)
            raws.append(bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image")))
            writer.write(image, t, raws[-1])
    return raws


def env_for(tmp_path: Path, offset: int) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(20 + (os.getpid() * 7 + offset * 31 + 101) % 200), ROS_LOG_DIR=str(tmp_path / "log"),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def replay(tmp_path: Path, bag: Path, offset: int, count: int, *args: str):
    """Start the listener, wait until it subscribes, replay; return (listener records, replay output)."""
    env = env_for(tmp_path, offset)
    out, ready = tmp_path / "got.pkl", tmp_path / "ready"
    listener = subprocess.Popen([sys.executable, str(LISTENER), "--topic", "/camera/image_raw",
                                 "sensor_msgs/msg/Image", "volatile", "--topic", "/meta", "std_msgs/msg/String",
                                 "latched", "--count", str(count), "--timeout", "60", "--out", str(out),
                                 "--ready", str(ready)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and listener.poll() is None:
            time.sleep(0.05)
        player = subprocess.run([sys.executable, "-m", "panoptic_ros.ros.replay", str(bag), "--delay", "0", "--wait-for-subscribers", "30", *args],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert player.returncode == 0, player.stderr
        assert listener.wait(timeout=90) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
    with out.open("rb") as f:
        return pickle.load(f), player.stdout


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_replay_publishes_recorded_bytes_at_recorded_timing(tmp_path, storage):
    raws = write_bag(tmp_path / "bag", storage)
    got, stdout = replay(tmp_path, tmp_path / "bag", 1 if storage == "mcap" else 2, N_IMAGES + 1, "--rate", "2")
    images = [(t, data) for topic, t, data in got if topic == "/camera/image_raw"]
    assert [data for _, data in images] == raws  # every message, in order, byte for byte
    assert [data for topic, _, data in got if topic == "/meta"] and f"published {N_IMAGES + 1} messages" in stdout
    t = np.array([t for t, _ in images]) - images[0][0]  # publisher-side timestamps, from the first image
    due = np.arange(N_IMAGES) * PERIOD_NS / 1e9 / 2  # recorded 10 Hz at rate 2
    # Never ahead of the recorded timing (beyond the first publish's own lateness, 0.05 s allowed); behind it
    # only by scheduling delays on a busy machine, and the anchored schedule catches up instead of drifting.
    assert np.all(t >= due - 0.05), f"published at {t.round(3)}, due at {due}"
    assert t[-1] < due[-1] + 3.0, f"published at {t.round(3)}, due at {due}"


def test_replay_start_offset_topics_and_errors(tmp_path):
    raws = write_bag(tmp_path / "bag", "mcap")
    # Skip 0.35 s: the images at 0.4, 0.5, 0.6 and 0.7 s remain; /meta is not selected.
    got, _ = replay(tmp_path, tmp_path / "bag", 3, 4, "--start-offset", "0.35", "--topics", "/camera/image_raw",
                    "--rate", "4")
    assert [data for _, _, data in got] == raws[4:]
    bad = subprocess.run([sys.executable, "-m", "panoptic_ros.ros.replay", str(tmp_path / "bag"), "--topics", "/nope"],
                         env=env_for(tmp_path, 4), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "'/nope'" in bad.stderr and "/camera/image_raw" in bad.stderr
