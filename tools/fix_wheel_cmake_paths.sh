#!/usr/bin/env bash
# The ROS 2 PyPI wheels' exported CMake files name the interpreter the wheels were built with
# (/opt/python/cp311-cp311); point them at VENV's Python headers and numpy. Idempotent.
# usage: bash tools/fix_wheel_cmake_paths.sh VENV   (tools/build_msgs.sh and tools/colcon_build_from_wheels.sh run it)
set -euo pipefail
VENV=${1:?usage: fix_wheel_cmake_paths.sh VENV}
PY=$VENV/bin/python
PY_INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NUMPY_INCLUDE=$("$PY" -c 'import numpy; print(numpy.get_include())')
WHEEL_PY_INCLUDE=/opt/python/cp311-cp311/include/python3.11
WHEEL_NUMPY_INCLUDE=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
mapfile -t STALE < <(grep -rlF --include='*.cmake' -e "$WHEEL_PY_INCLUDE" -e "$WHEEL_NUMPY_INCLUDE" "$VENV/share" || true)
if ((${#STALE[@]})); then
  sed -i -e "s#$WHEEL_NUMPY_INCLUDE#$NUMPY_INCLUDE#g" -e "s#$WHEEL_PY_INCLUDE#$PY_INCLUDE#g" "${STALE[@]}"
  echo "fix_wheel_cmake_paths.sh: pointed ${#STALE[@]} CMake files of the ROS wheels at $PY_INCLUDE and $NUMPY_INCLUDE"
fi
