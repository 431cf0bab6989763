"""Start panoptic_node (and optionally RViz).

    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info \
        model:=/path/to/model.pt backend:=cpu rviz:=true

``model`` and ``backend`` override the parameter file only when given. Large images over best-effort QoS need
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (Fast DDS) in the environment of the camera driver and of this node.
"""
import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from panoptic_ros.ros.rviz_config import write_rviz_config

PACKAGE = "panoptic_ros"
NODE_NAME = "panoptic_node"


def _nodes(context):
    share = get_package_share_directory(PACKAGE)
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    use_sim_time = value("use_sim_time").lower() in ("true", "1", "yes")
    overrides = {"use_sim_time": use_sim_time}
    if value("model"):
        overrides["model_path"] = value("model")
    if value("backend"):
        overrides["backend"] = value("backend")
    node = Node(
        package=PACKAGE,
        executable="panoptic_node",
        name=NODE_NAME,
        namespace=value("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[value("params_file"), overrides],  # the file, then the launch arguments on top
        remappings=[("image", value("image")), ("camera_info", value("camera_info"))],
    )
    # RViz shows the topics this launch really uses (namespace, image remap), not the file's defaults.
    rviz_file = write_rviz_config(os.path.join(share, "config", "panoptic.rviz"),
                                  os.path.join(tempfile.mkdtemp(prefix="panoptic_rviz_"), "panoptic.rviz"),
                                  namespace=value("namespace"), node_name=NODE_NAME, image=value("image"))
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", str(rviz_file)],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return [node, rviz]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="Input image topic (with image_transport compressed: its base name)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="CameraInfo topic of the input images"),
        DeclareLaunchArgument("model", default_value="",
                              description="Checkpoint path; empty = model_path of the parameter file"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | tensorrt | cuda | cpu | onnxruntime; empty = the parameter file's"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "panoptic.yaml"),
                              description="ROS parameter file for panoptic_node"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (e.g. from panoptic-replay --clock)"),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/panoptic.rviz"),
        OpaqueFunction(function=_nodes),
    ])
