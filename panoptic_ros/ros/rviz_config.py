"""config/panoptic.rviz with the topic names a launch actually uses (namespace, node name, image remap).

The shipped file names the default topics (``/panoptic_node/...``, ``/camera/image_raw``); the launch file
writes a copy whose displays point at the node's resolved names, so ``namespace:=`` and ``image:=`` keep the
display working. Names resolve as rclpy resolves them: a private ``~/x`` is ``<namespace>/<node>/x``, a relative
remap target is put under the namespace.
"""
from __future__ import annotations

from pathlib import Path

import yaml

DEFAULT_NODE = "/panoptic_node"
DEFAULT_IMAGE = "/camera/image_raw"


def resolve(name: str, namespace: str) -> str:
    """An absolute topic name for ``name`` seen from a node in ``namespace``."""
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


def rviz_config(template: str, namespace: str = "", node_name: str = "panoptic_node",
                image: str = DEFAULT_IMAGE) -> str:
    """The RViz config ``template`` (YAML text) with the node's outputs under ``<namespace>/<node_name>/`` and the
    camera display on the resolved ``image`` topic."""
    config = yaml.safe_load(template)
    node = resolve(node_name, namespace)
    for display in config["Visualization Manager"]["Displays"]:
        topic = display.get("Topic")
        if not topic:
            continue
        value = topic["Value"]
        if value.startswith(DEFAULT_NODE + "/"):
            topic["Value"] = node + value[len(DEFAULT_NODE):]
        elif value == DEFAULT_IMAGE:
            topic["Value"] = resolve(image, namespace)
    return yaml.safe_dump(config, sort_keys=False)


def write_rviz_config(template_path: str | Path, out_path: str | Path, namespace: str = "",
                      node_name: str = "panoptic_node", image: str = DEFAULT_IMAGE) -> Path:
    out = Path(out_path)
    out.write_text(rviz_config(Path(template_path).read_text(), namespace, node_name, image))
    return out
