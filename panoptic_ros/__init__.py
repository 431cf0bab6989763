"""panoptic_ros: single-shot panoptic segmentation (Weber et al., IROS 2020) for a vehicle camera, on ROS 2.

The core (``taxonomy``, ``panoptic``, ``geometry``, ``data``, ``model``, ``head``, ``bev``, ``evaluation``)
has no ROS in it; ``ros/`` and ``node.py`` are thin adapters over it.
"""
# The message classes generated from msg/ by rosidl are installed as ``panoptic_ros.msg`` in a second
# ``panoptic_ros`` folder (the ROS install or venv site-packages); let this package span both.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
