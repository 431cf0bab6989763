"""Thin ROS 2 adapters over the core: Image <-> numpy, core results -> messages, bag replay, parameters."""
