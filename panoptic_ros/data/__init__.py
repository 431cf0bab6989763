"""Data: the synthetic driving world, data-set readers/writers (COCO / Cityscapes panoptic) and rosbag2 I/O."""
