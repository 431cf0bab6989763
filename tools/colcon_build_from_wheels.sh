#!/usr/bin/env bash
# Build this repository the way a vehicle's ROS 2 workspace builds it -- `colcon build` -- but against the ROS 2
# PyPI wheels of a plain venv instead of a ROS install: a check, here, that CMakeLists.txt + package.xml build
# the messages, the Python package, the `ros2 run` commands and the shared files.
#
# usage: bash tools/colcon_build_from_wheels.sh VENV WORKDIR
#   VENV     a venv with requirements.txt + requirements-build.txt installed (colcon-common-extensions,
#            ament_cmake and rosidl from PyPI)
#   WORKDIR  where colcon's build/, install/ and log/ go (nothing is installed into VENV)
#
# What a ROS install provides (ament_cmake, rosidl, the message packages) comes from VENV, found through
# CMAKE_PREFIX_PATH and AMENT_PREFIX_PATH = VENV; nothing is sourced.
set -euo pipefail

VENV=$(cd "${1:?usage: colcon_build_from_wheels.sh VENV WORKDIR}" && pwd)
WORK=${2:?usage: colcon_build_from_wheels.sh VENV WORKDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$VENV/bin/python
test -x "$VENV/bin/colcon" || { echo "colcon_build_from_wheels.sh: no colcon in $VENV (pip install colcon-common-extensions)" >&2; exit 1; }

bash "$ROOT/tools/fix_wheel_cmake_paths.sh" "$VENV"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# A workspace as on a vehicle: WORK/src/panoptic_ros holds the repository's files (git's tracked ones, as they are
# in the working tree; without git, all but the venv and build outputs). Building in place would not do: a venv
# inside the repository puts numpy's include path under the source folder, which CMake refuses for an
# installed target ("prefixed in the source directory").
SRC=$WORK/src/panoptic_ros
rm -rf "$SRC" && mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --show-toplevel >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -C "$SRC" -xf -
else
  tar -C "$ROOT" --exclude=./.venv --exclude="./$(basename "$VENV")" --exclude=./build --exclude=./install \
    --exclude=./log --exclude=./out --exclude=./data --exclude=__pycache__ -cf - . | tar -C "$SRC" -xf -
fi
export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
colcon --log-base "$WORK/log" build --base-paths "$WORK/src" --build-base "$WORK/build" --install-base "$WORK/install" \
  --event-handlers console_direct- \
  --cmake-args -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF \
  || { echo "colcon_build_from_wheels.sh: colcon build failed (logs: $WORK/log)" >&2; exit 1; }
echo "colcon_build_from_wheels.sh: built into $WORK/install/panoptic_ros"
