"""Every third-party import in panoptic_ros/ is declared: in package.xml (what rosdep installs on a vehicle) and,
for Python libraries, in setup.py (install_requires or an extra). Imports are found with ast (plain imports,
``from`` imports and ``importlib.import_module("...")`` literals); modules are mapped to distributions with
importlib.metadata where installed."""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ROS packages (package.xml key = the module's name); the ones not installable here are listed by hand.
ROS_NOT_ON_PYPI = {"cv_bridge", "tf2_ros", "tf2_msgs"}  # tf2_msgs: built here by tools/build_msgs.sh
# Python distribution -> its rosdep key. rosdep's own keys where they exist (python3-*), else the -pip keys
# rosdep resolves through pip.
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "opencv-python-headless": "python3-opencv", "torch": "python3-torch",
    "torchvision": "python3-torchvision", "pyyaml": "python3-yaml", "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib", "rosbags": "python3-rosbags-pip", "pycocotools": "python3-pycocotools",
    "pillow": "python3-pil", "onnx": "python3-onnx-pip", "onnxscript": "python3-onnxscript-pip",
    "onnxruntime": "python3-onnxruntime-pip", "numba": "python3-numba", "orjson": "python3-orjson-pip",
    "zlib-ng": "python3-zlib-ng-pip", "openvino": "python3-openvino-pip", "nncf": "python3-nncf-pip",
}
# GPU-only libraries from NVIDIA's index (no rosdep key; setup.py's tensorrt extra): module -> distribution.
GPU_ONLY = {"tensorrt": "tensorrt", "torch_tensorrt": "torch-tensorrt", "modelopt": "nvidia-modelopt"}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files of panoptic_ros/ importing it (stdlib and panoptic_ros itself left out)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "panoptic_ros").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                    == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
                names = [node.args[0].value]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "panoptic_ros":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def package_xml_keys() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("depend", "exec_depend")}


def setup_requirements() -> set[str]:
    """Normalised distribution names of setup.py's install_requires and every extra."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("install_requires", "extras_require"):
            value = ast.literal_eval(node.value)
            for req in (value if isinstance(value, list) else [r for reqs in value.values() for r in reqs]):
                names.add(normalise(re.split(r"[<>=!~;\[ ]", req)[0]))
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_import_is_declared():
    installed = packages_distributions()
    xml, setup = package_xml_keys(), setup_requirements()
    problems = []
    for module, files in sorted(third_party_imports().items()):
        where = f"{module} (imported in {', '.join(sorted(files)[:2])})"
        dists = [normalise(d) for d in installed.get(module, [])]
        if module in ROS_NOT_ON_PYPI or any(d.startswith("ros-") for d in dists):
            if module not in xml:
                problems.append(f"{where}: ROS package missing from package.xml")
            continue
        if module in GPU_ONLY:
            if normalise(GPU_ONLY[module]) not in setup:
                problems.append(f"{where}: {GPU_ONLY[module]} missing from setup.py's extras")
            continue
        if not dists:
            problems.append(f"{where}: not installed here and not known to this test; declare it")
            continue
        dist = dists[0]
        if dist not in setup:
            problems.append(f"{where}: distribution {dist} missing from setup.py install_requires / extras")
        key = ROSDEP_KEYS.get(dist)
        if key is None:
            problems.append(f"{where}: no rosdep key known for {dist}; add one here and to package.xml")
        elif key not in xml:
            problems.append(f"{where}: rosdep key {key} missing from package.xml")
    assert not problems, "\n".join(problems)


def test_the_walk_finds_what_the_issue_named():
    """The imports that were missing from the manifests are seen by the walk (so the test above covers them)."""
    imports = third_party_imports()
    assert {"rcl_interfaces", "rosgraph_msgs", "pycocotools", "onnxruntime", "tf2_ros"} <= set(imports)
    assert "panoptic_ros/node.py" in imports["rcl_interfaces"]


def test_requirements_txt_installs_what_setup_py_requires():
    listed = {normalise(re.split(r"[<>=!~;\[ #]", line.strip())[0])
              for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and
              not line.startswith("#")}
    tree = ast.parse((ROOT / "setup.py").read_text())
    required = next(ast.literal_eval(k.value) for k in ast.walk(tree)
                    if isinstance(k, ast.keyword) and k.arg == "install_requires")
    assert {normalise(r) for r in required} <= listed
