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
export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
# --base-paths: the repository is the package (no src/ symlink needed); colcon does not look inside it further.
colcon --log-base "$WORK/log" build --base-paths "$ROOT" --build-base "$WORK/build" --install-base "$WORK/install" \
  --event-handlers console_direct- \
  --cmake-args -DPython3_EXECUTABLE="$PY" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF \
  || { echo "colcon_build_from_wheels.sh: colcon build failed (logs: $WORK/log)" >&2; exit 1; }
echo "colcon_build_from_wheels.sh: built into $WORK/install/panoptic_ros"
