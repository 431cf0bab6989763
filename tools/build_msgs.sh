#!/usr/bin/env bash
# Generate panoptic_ros' messages (msg/*.msg) with rosidl into a plain Python venv holding the ROS 2 PyPI
# wheels, so `from panoptic_ros.msg import PanopticSegmentation` works there with nothing sourced.
#
# usage: bash tools/build_msgs.sh VENV        (the Makefile runs it before `pip install .`)
#
# The Python package itself is installed by pip (PANOPTIC_ROS_INSTALL_PYTHON=OFF); in a ROS workspace
# `colcon build` does everything instead. See docs and /work/shared notes on ROS 2 from PyPI.
set -euo pipefail

VENV=${1:?usage: build_msgs.sh VENV}
VENV=$(cd "$VENV" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${PANOPTIC_ROS_MSG_BUILD:-$ROOT/build/msgs}
PY=$VENV/bin/python

test -x "$PY" || { echo "build_msgs.sh: $PY not found: create the venv first" >&2; exit 1; }
command -v cmake >/dev/null || { echo "build_msgs.sh: cmake not found (pip install cmake, or apt install cmake)" >&2; exit 1; }

# The wheels' exported CMake files name the wheel builder's interpreter: point them at this venv.
bash "$ROOT/tools/fix_wheel_cmake_paths.sh" "$VENV"

mkdir -p "$(dirname "$BUILD")"
cmake -S "$ROOT" -B "$BUILD" \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DPANOPTIC_ROS_INSTALL_PYTHON=OFF \
  -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release >"$BUILD.configure.log" 2>&1 \
  || { mkdir -p "$BUILD"; cat "$BUILD.configure.log" >&2; echo "build_msgs.sh: CMake configure failed" >&2; exit 1; }
cmake --build "$BUILD" -j"${PANOPTIC_ROS_JOBS:-2}" >"$BUILD.build.log" 2>&1 \
  || { tail -n 60 "$BUILD.build.log" >&2; echo "build_msgs.sh: build failed (full log: $BUILD.build.log)" >&2; exit 1; }
cmake --install "$BUILD" >"$BUILD.install.log" 2>&1 \
  || { cat "$BUILD.install.log" >&2; exit 1; }

# rosidl also installs egg-info metadata for "panoptic_ros"; in a venv pip owns that name (and would, on
# `pip install .`, uninstall an egg-info distribution by deleting the whole panoptic_ros folder, messages
# included).
rm -rf "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/panoptic_ros-*.egg-info

# tf2_msgs/TFMessage (the node's built-in TF buffer subscribes /tf and /tf_static): no PyPI wheel has it, so
# build the one message from tools/tf2_msgs unless the venv already imports a tf2_msgs.
if ! (cd / && "$PY" -c 'from tf2_msgs.msg import TFMessage' 2>/dev/null); then
  TF2=$BUILD-tf2_msgs
  cmake -S "$ROOT/tools/tf2_msgs" -B "$TF2" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
    >"$TF2.configure.log" 2>&1 || { cat "$TF2.configure.log" >&2; echo "build_msgs.sh: tf2_msgs configure failed" >&2; exit 1; }
  cmake --build "$TF2" -j"${PANOPTIC_ROS_JOBS:-2}" >"$TF2.build.log" 2>&1 \
    || { tail -n 60 "$TF2.build.log" >&2; echo "build_msgs.sh: tf2_msgs build failed" >&2; exit 1; }
  cmake --install "$TF2" >"$TF2.install.log" 2>&1 || { cat "$TF2.install.log" >&2; exit 1; }
  rm -rf "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/tf2_msgs-*.egg-info
fi

# Fail here, not in the first test, when the generated package cannot be imported.
(cd / && "$PY" -c 'from panoptic_ros.msg import PanopticSegmentation, PanopticSegment, PanopticCategory; from tf2_msgs.msg import TFMessage') \
  || { echo "build_msgs.sh: messages were built but do not import from $VENV" >&2; exit 1; }
echo "build_msgs.sh: panoptic_ros messages installed into $VENV"
