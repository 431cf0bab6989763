"""The repository builds the way a vehicle builds it: `colcon build` (colcon-common-extensions from PyPI)
against the ROS 2 PyPI wheels of this venv, into a temporary workspace (tools/colcon_build_from_wheels.sh)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("colcon", path=str(VENV / "bin")) is None,
                    reason="colcon-common-extensions is not installed in this venv (requirements-build.txt)")
@pytest.mark.timeout(600)
def test_colcon_build_from_wheels(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "tools" / "colcon_build_from_wheels.sh"), str(VENV), str(tmp_path)],
                          capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = tmp_path / "install" / "panoptic_ros"
    # `ros2 run panoptic_ros <command>` finds the same commands as setup.py's console scripts
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts = next(ast.literal_eval(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword)
                   and k.arg == "entry_points")["console_scripts"]
    commands = {s.split("=")[0].strip() for s in scripts}
    assert {p.name for p in (prefix / "lib" / "panoptic_ros").iterdir()} == commands
    share = prefix / "share" / "panoptic_ros"
    for rel in ("package.xml", "launch/panoptic.launch.py", "config/panoptic.yaml", "config/panoptic.rviz",
                "models/panoptic_r18_synthetic.pt", "msg/PanopticSegmentation.msg"):
        assert (share / rel).is_file(), rel
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "panoptic_ros").is_file()
    # the installed Python package (hand-written modules + generated messages) imports from the install space
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=f"{prefix}{os.pathsep}{VENV}")
    check = subprocess.run(
        [sys.executable, "-c", "import panoptic_ros.node, panoptic_ros.msg as m; "
         "from ament_index_python.packages import get_package_share_directory as g; "
         "print(panoptic_ros.node.__file__); print(m.PanopticSegmentation.__module__); print(g('panoptic_ros'))"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    node_file, _, share_dir = check.stdout.split()
    assert node_file.startswith(str(site)) and share_dir == str(share)
    run = subprocess.run([sys.executable, str(prefix / "lib" / "panoptic_ros" / "panoptic-world"), "--help"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "generate" in run.stdout
