"""The launch file, parameter file, RViz config, package.xml and CMakeLists agree with the code.

launch / launch_ros are not installable from PyPI: without them the launch file is checked by parsing it
(ast); with them it is also loaded and its description generated.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from panoptic_ros.ros.params import PARAMETERS, NodeConfig

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "panoptic.launch.py"
NODE_OUTPUTS = ("panoptic", "panoptic_ids", "semantic", "overlay", "grid", "markers")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return dict(item.replace(" ", "").split("=", 1) for item in ast.literal_eval(value))
    raise AssertionError("setup.py has no console_scripts")


def launch_calls(name: str) -> list[ast.Call]:
    tree = ast.parse(LAUNCH.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def keywords(call: ast.Call) -> dict:
    return {k.arg: k.value for k in call.keywords}


def constant(node: ast.AST):
    """A literal, or a module-level NAME = literal of the launch file."""
    if isinstance(node, ast.Name):
        for stmt in ast.parse(LAUNCH.read_text()).body:
            if isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == node.id for t in stmt.targets):
                return ast.literal_eval(stmt.value)
        raise AssertionError(f"{node.id} is not a module constant of the launch file")
    return ast.literal_eval(node)


def test_parameter_file_holds_exactly_the_declared_defaults():
    data = yaml.safe_load((ROOT / "config" / "panoptic.yaml").read_text())
    params = flatten(data["/**"]["ros__parameters"])
    assert set(params) == {p.name for p in PARAMETERS}
    for spec in PARAMETERS:
        assert params[spec.name] == spec.default, spec.name
    assert NodeConfig.from_values(params) == NodeConfig.from_values({})


def test_launch_file_runs_an_installed_executable_with_declared_parameters():
    scripts = console_scripts()
    nodes = [keywords(c) for c in launch_calls("Node")]
    ours = [k for k in nodes if constant(k["package"]) == "panoptic_ros"]
    assert len(ours) == 1
    executable = constant(ours[0]["executable"])
    assert executable in scripts and scripts[executable] == "panoptic_ros.node:main"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert dict(re.findall(r'"([\w-]+)=([\w.]+:\w+)"', cmake)) == scripts  # ros2 run wrappers == pip commands
    # Parameters the launch file sets on top of the file must be declared by the node (use_sim_time is rclpy's).
    overridden = re.findall(r'overrides\["(\w+)"\]', LAUNCH.read_text())
    assert overridden and set(overridden) <= {p.name for p in PARAMETERS}
    remapped = {constant(t.elts[0]) for t in ours[0]["remappings"].elts}
    assert remapped == {"image", "camera_info"}
    node_src = (ROOT / "panoptic_ros" / "node.py").read_text()
    for topic in remapped:
        assert f'"{topic}"' in node_src
    args = {constant(c.args[0]) for c in launch_calls("DeclareLaunchArgument")}
    assert {"image", "camera_info", "model", "backend", "params_file", "rviz"} <= args
    assert (ROOT / "config" / "panoptic.rviz").exists() and "panoptic.rviz" in LAUNCH.read_text()


def test_rviz_config_shows_the_node_outputs_in_base_link():
    rviz = yaml.safe_load((ROOT / "config" / "panoptic.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    topics = {d["Class"]: d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert topics["rviz_default_plugins/Map"] == "/panoptic_node/grid"
    assert topics["rviz_default_plugins/MarkerArray"] == "/panoptic_node/markers"
    images = [d["Topic"]["Value"] for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/Image"]
    assert "/panoptic_node/overlay" in images and "/camera/image_raw" in images
    for topic in list(topics.values()) + images:
        if topic.startswith("/panoptic_node/"):
            assert topic.rsplit("/", 1)[1] in NODE_OUTPUTS


def test_package_xml_and_cmake_build_the_messages():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "panoptic_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    assert {"rclpy", "std_msgs", "sensor_msgs", "nav_msgs", "geometry_msgs", "visualization_msgs",
            "diagnostic_msgs", "builtin_interfaces", "rosidl_default_generators", "rosidl_default_runtime"} <= deps
    import panoptic_ros

    assert root.findtext("version") == panoptic_ros.__version__
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"(msg/\w+\.msg)"', cmake))
    assert listed == {f"msg/{p.name}" for p in (ROOT / "msg").glob("*.msg")} and listed


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installed (not on PyPI); the launch file is checked by parsing above")
def test_launch_description_generates():  # pragma: no cover - runs on machines with a ROS install
    spec = importlib.util.spec_from_file_location("panoptic_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert {"image", "camera_info", "model", "backend", "params_file", "rviz"} <= names
