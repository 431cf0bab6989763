"""Where the package's shared files (models/, config/, launch/) are, in a source tree, a venv or a ROS install."""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "panoptic_ros"


def share_dir() -> Path:
    """The folder holding models/, config/ and launch/.

    Order: ``$PANOPTIC_ROS_SHARE``; the source tree this module lives in; the ament index of a ROS
    install; ``<prefix>/share/panoptic_ros`` of this interpreter.
    """
    env = os.environ.get("PANOPTIC_ROS_SHARE")
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[1]
    if (source / "package.xml").exists() and (source / "config").is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # not a ROS install, or this package is not in its index
        pass
    return Path(sys.prefix) / "share" / PACKAGE


def default_model_path() -> Path:
    return share_dir() / "models" / "panoptic_r18_synthetic.pt"


def config_path(name: str = "panoptic.yaml") -> Path:
    return share_dir() / "config" / name
