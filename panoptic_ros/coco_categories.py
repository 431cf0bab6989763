"""COCO-panoptic's 133 categories (80 things, 53 stuff) as panopticapi's ``panoptic_coco_categories.json`` lists
them: id, name, isthing, supercategory, colour.

The data set's own ``panoptic_{split}.json`` carries ids, names, isthing and supercategory but no colours; this
table supplies the colours (for overlays) and lets tests and tools build COCO's class list without the data set.
"""
from __future__ import annotations

# (id, name, isthing, supercategory, (r, g, b))
COCO_PANOPTIC = (
    (1, "person", 1, "person", (220, 20, 60)), (2, "bicycle", 1, "vehicle", (119, 11, 32)),
    (3, "car", 1, "vehicle", (0, 0, 142)), (4, "motorcycle", 1, "vehicle", (0, 0, 230)),
    (5, "airplane", 1, "vehicle", (106, 0, 228)), (6, "bus", 1, "vehicle", (0, 60, 100)),
    (7, "train", 1, "vehicle", (0, 80, 100)), (8, "truck", 1, "vehicle", (0, 0, 70)),
    (9, "boat", 1, "vehicle", (0, 0, 192)), (10, "traffic light", 1, "outdoor", (250, 170, 30)),
    (11, "fire hydrant", 1, "outdoor", (100, 170, 30)), (13, "stop sign", 1, "outdoor", (220, 220, 0)),
    (14, "parking meter", 1, "outdoor", (175, 116, 175)), (15, "bench", 1, "outdoor", (250, 0, 30)),
    (16, "bird", 1, "animal", (165, 42, 42)), (17, "cat", 1, "animal", (255, 77, 255)),
    (18, "dog", 1, "animal", (0, 226, 252)), (19, "horse", 1, "animal", (182, 182, 255)),
    (20, "sheep", 1, "animal", (0, 82, 0)), (21, "cow", 1, "animal", (120, 166, 157)),
    (22, "elephant", 1, "animal", (110, 76, 0)), (23, "bear", 1, "animal", (174, 57, 255)),
    (24, "zebra", 1, "animal", (199, 100, 0)), (25, "giraffe", 1, "animal", (72, 0, 118)),
    (27, "backpack", 1, "accessory", (255, 179, 240)), (28, "umbrella", 1, "accessory", (0, 125, 92)),
    (31, "handbag", 1, "accessory", (209, 0, 151)), (32, "tie", 1, "accessory", (188, 208, 182)),
    (33, "suitcase", 1, "accessory", (0, 220, 176)), (34, "frisbee", 1, "sports", (255, 99, 164)),
    (35, "skis", 1, "sports", (92, 0, 73)), (36, "snowboard", 1, "sports", (133, 129, 255)),
    (37, "sports ball", 1, "sports", (78, 180, 255)), (38, "kite", 1, "sports", (0, 228, 0)),
    (39, "baseball bat", 1, "sports", (174, 255, 243)), (40, "baseball glove", 1, "sports", (45, 89, 255)),
    (41, "skateboard", 1, "sports", (134, 134, 103)), (42, "surfboard", 1, "sports", (145, 148, 174)),
    (43, "tennis racket", 1, "sports", (255, 208, 186)), (44, "bottle", 1, "kitchen", (197, 226, 255)),
    (46, "wine glass", 1, "kitchen", (171, 134, 1)), (47, "cup", 1, "kitchen", (109, 63, 54)),
    (48, "fork", 1, "kitchen", (207, 138, 255)), (49, "knife", 1, "kitchen", (151, 0, 95)),
    (50, "spoon", 1, "kitchen", (9, 80, 61)), (51, "bowl", 1, "kitchen", (84, 105, 51)),
    (52, "banana", 1, "food", (74, 65, 105)), (53, "apple", 1, "food", (166, 196, 102)),
    (54, "sandwich", 1, "food", (208, 195, 210)), (55, "orange", 1, "food", (255, 109, 65)),
    (56, "broccoli", 1, "food", (0, 143, 149)), (57, "carrot", 1, "food", (179, 0, 194)),
    (58, "hot dog", 1, "food", (209, 99, 106)), (59, "pizza", 1, "food", (5, 121, 0)),
    (60, "donut", 1, "food", (227, 255, 205)), (61, "cake", 1, "food", (147, 186, 208)),
    (62, "chair", 1, "furniture", (153, 69, 1)), (63, "couch", 1, "furniture", (3, 95, 161)),
    (64, "potted plant", 1, "furniture", (163, 255, 0)), (65, "bed", 1, "furniture", (119, 0, 170)),
    (67, "dining table", 1, "furniture", (0, 182, 199)), (70, "toilet", 1, "furniture", (0, 165, 120)),
    (72, "tv", 1, "electronic", (183, 130, 88)), (73, "laptop", 1, "electronic", (95, 32, 0)),
    (74, "mouse", 1, "electronic", (130, 114, 135)), (75, "remote", 1, "electronic", (110, 129, 133)),
    (76, "keyboard", 1, "electronic", (166, 74, 118)), (77, "cell phone", 1, "electronic", (219, 142, 185)),
    (78, "microwave", 1, "appliance", (79, 210, 114)), (79, "oven", 1, "appliance", (178, 90, 62)),
    (80, "toaster", 1, "appliance", (65, 70, 15)), (81, "sink", 1, "appliance", (127, 167, 115)),
    (82, "refrigerator", 1, "appliance", (59, 105, 106)), (84, "book", 1, "indoor", (142, 108, 45)),
    (85, "clock", 1, "indoor", (196, 172, 0)), (86, "vase", 1, "indoor", (95, 54, 80)),
    (87, "scissors", 1, "indoor", (128, 76, 255)), (88, "teddy bear", 1, "indoor", (201, 57, 1)),
    (89, "hair drier", 1, "indoor", (246, 0, 122)), (90, "toothbrush", 1, "indoor", (191, 162, 208)),
    (92, "banner", 0, "textile", (255, 255, 128)), (93, "blanket", 0, "textile", (147, 211, 203)),
    (95, "bridge", 0, "building", (150, 100, 100)), (100, "cardboard", 0, "raw-material", (168, 171, 172)),
    (107, "counter", 0, "furniture-stuff", (146, 112, 198)), (109, "curtain", 0, "textile", (210, 170, 100)),
    (112, "door-stuff", 0, "furniture-stuff", (92, 136, 89)), (118, "floor-wood", 0, "floor", (218, 88, 184)),
    (119, "flower", 0, "plant", (241, 129, 0)), (122, "fruit", 0, "food-stuff", (217, 17, 255)),
    (125, "gravel", 0, "ground", (124, 74, 181)), (128, "house", 0, "building", (70, 70, 70)),
    (130, "light", 0, "furniture-stuff", (255, 228, 255)), (133, "mirror-stuff", 0, "furniture-stuff", (154, 208, 0)),
    (138, "net", 0, "structural", (193, 0, 92)), (141, "pillow", 0, "textile", (76, 91, 113)),
    (144, "platform", 0, "ground", (255, 180, 195)), (145, "playingfield", 0, "ground", (106, 154, 176)),
    (147, "railroad", 0, "ground", (230, 150, 140)), (148, "river", 0, "water", (60, 143, 255)),
    (149, "road", 0, "ground", (128, 64, 128)), (151, "roof", 0, "building", (92, 82, 55)),
    (154, "sand", 0, "ground", (254, 212, 124)), (155, "sea", 0, "water", (73, 77, 174)),
    (156, "shelf", 0, "furniture-stuff", (255, 160, 98)), (159, "snow", 0, "ground", (255, 255, 255)),
    (161, "stairs", 0, "furniture-stuff", (104, 84, 109)), (166, "tent", 0, "building", (169, 164, 131)),
    (168, "towel", 0, "textile", (225, 199, 255)), (171, "wall-brick", 0, "wall", (137, 54, 74)),
    (175, "wall-stone", 0, "wall", (135, 158, 223)), (176, "wall-tile", 0, "wall", (7, 246, 231)),
    (177, "wall-wood", 0, "wall", (107, 255, 200)), (178, "water-other", 0, "water", (58, 41, 149)),
    (180, "window-blind", 0, "window", (183, 121, 142)), (181, "window-other", 0, "window", (255, 73, 97)),
    (184, "tree-merged", 0, "plant", (107, 142, 35)), (185, "fence-merged", 0, "structural", (190, 153, 153)),
    (186, "ceiling-merged", 0, "ceiling", (146, 139, 141)), (187, "sky-other-merged", 0, "sky", (70, 130, 180)),
    (188, "cabinet-merged", 0, "furniture-stuff", (134, 199, 156)),
    (189, "table-merged", 0, "furniture-stuff", (209, 226, 140)),
    (190, "floor-other-merged", 0, "floor", (96, 36, 108)), (191, "pavement-merged", 0, "ground", (96, 96, 96)),
    (192, "mountain-merged", 0, "solid", (64, 170, 64)), (193, "grass-merged", 0, "plant", (152, 251, 152)),
    (194, "dirt-merged", 0, "ground", (208, 229, 228)), (195, "paper-merged", 0, "raw-material", (206, 186, 171)),
    (196, "food-other-merged", 0, "food-stuff", (152, 161, 64)),
    (197, "building-other-merged", 0, "building", (116, 112, 0)), (198, "rock-merged", 0, "solid", (0, 114, 143)),
    (199, "wall-other-merged", 0, "wall", (102, 102, 156)), (200, "rug-merged", 0, "textile", (250, 141, 255)),
)


def coco_panoptic_categories(with_color: bool = False) -> list[dict]:
    """The ``categories`` list of COCO's ``panoptic_{split}.json`` (``with_color``: as panopticapi's file)."""
    out = []
    for cat_id, name, isthing, supercategory, color in COCO_PANOPTIC:
        entry = {"supercategory": supercategory, "isthing": isthing, "id": cat_id, "name": name}
        if with_color:
            entry["color"] = list(color)
        out.append(entry)
    return out


COCO_COLORS = {(cat_id, name): color for cat_id, name, _, _, color in COCO_PANOPTIC}
COCO_SUPERCATEGORIES = {(cat_id, name): group for cat_id, name, _, group, _ in COCO_PANOPTIC}
