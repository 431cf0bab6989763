"""RViz follows the launch file's namespace and image remap: the launch file's own _nodes() is run with stand-ins
for launch / launch_ros (not installable from PyPI), and the RViz config it writes is parsed."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from panoptic_ros.ros.rviz_config import resolve

ROOT = Path(__file__).resolve().parents[1]


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture()
def launch_module(monkeypatch):
    """The launch file imported against minimal stand-ins of the launch API it uses."""
    values: dict[str, str] = {}

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return values[self.name]

    stubs = {
        "launch": types.SimpleNamespace(LaunchDescription=_Recorded),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=_Recorded, OpaqueFunction=_Recorded),
        "launch.conditions": types.SimpleNamespace(IfCondition=_Recorded),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.SimpleNamespace(), "launch_ros.actions": types.SimpleNamespace(Node=_Recorded),
        "ament_index_python.packages": types.SimpleNamespace(get_package_share_directory=lambda p: str(ROOT)),
    }
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("panoptic_launch", ROOT / "launch" / "panoptic.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = {a.args[0]: a.kwargs.get("default_value", "")
                for a in module.generate_launch_description().args[0] if a.args}
    return module, values, defaults


@pytest.mark.parametrize("namespace, image", [("", "/camera/image_raw"), ("robot1", "/front/image_color"),
                                              ("/fleet/robot2", "cam/image")])
def test_rviz_topics_are_the_nodes_resolved_topics(launch_module, namespace, image):
    module, values, defaults = launch_module
    values.update(defaults, namespace=namespace, image=image, rviz="true")
    node, rviz = module._nodes(None)
    ns, name = node.kwargs["namespace"], node.kwargs["name"]
    remaps = dict(node.kwargs["remappings"])
    config = yaml.safe_load(Path(rviz.kwargs["arguments"][1]).read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Name"]: d["Topic"]["Value"] for d in displays if "Topic" in d}
    node_prefix = resolve(name, ns)  # rclpy: ~/x of node `name` in namespace `ns`
    outputs = {v for v in topics.values() if v.startswith(node_prefix + "/")}
    assert {t.rsplit("/", 1)[1] for t in outputs} == {"grid", "markers", "overlay"}
    assert resolve(remaps["image"], ns) in topics.values()
    expected_prefix = ("/" + namespace.strip("/") if namespace else "") + "/panoptic_node"
    assert node_prefix == expected_prefix
    assert all(not t.startswith("/panoptic_node/") for t in topics.values()) or not namespace
