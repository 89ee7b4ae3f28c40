"""Boxes as fractions, NMS and the proposals of a generated photo."""

from __future__ import annotations

from PIL import Image, ImageDraw

from shoplens.indexer.serving.look.boxes import Box, suppress
from shoplens.indexer.serving.look.finder import square_crop
from shoplens.indexer.serving.look.proposals import ProposalConfig, propose, windows


def test_iou_and_pixels() -> None:
    a = Box(0.0, 0.0, 0.5, 0.5)
    assert a.iou(a) == 1.0
    assert a.iou(Box(0.5, 0.5, 0.5, 0.5)) == 0.0
    assert abs(a.iou(Box(0.25, 0.0, 0.5, 0.5)) - 1 / 3) < 1e-9
    assert Box(0.999, 0.999, 0.001, 0.001).pixels(100, 50) == (99, 49, 100, 50)


def test_within_maps_a_crop_box_to_the_whole_photo() -> None:
    crop = Box(0.5, 0.25, 0.5, 0.5)
    assert Box(0.0, 0.0, 1.0, 1.0).within(crop) == crop
    assert Box(0.5, 0.5, 0.5, 0.5).within(crop) == Box(0.75, 0.5, 0.25, 0.25)


def test_suppress_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = [Box(0, 0, 0.5, 0.5), Box(0.05, 0, 0.5, 0.5), Box(0.5, 0.5, 0.4, 0.4)]
    assert suppress(boxes, [0.5, 0.9, 0.1], max_iou=0.5) == [1, 2]
    assert suppress(boxes, [0.5, 0.9, 0.1], max_iou=0.95) == [1, 0, 2]


def test_suppress_is_greedy_nms_over_box_iou() -> None:
    """Vectorised NMS keeps exactly what box-by-box greedy NMS with Box.iou keeps."""
    import random

    rnd = random.Random(7)
    for trial in range(30):
        boxes = []
        for _ in range(rnd.randint(0, 120)):
            w, h = rnd.uniform(0.01, 0.6), rnd.uniform(0.01, 0.6)
            boxes.append(Box(rnd.uniform(0, 1 - w), rnd.uniform(0, 1 - h), w, h))
        scores = [rnd.random() for _ in boxes]
        max_iou = rnd.choice([0.0, 0.3, 0.5, 0.9])
        expected: list[int] = []
        for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
            if all(boxes[i].iou(boxes[j]) <= max_iou for j in expected):
                expected.append(i)
        assert suppress(boxes, scores, max_iou) == expected, trial
        limit = rnd.randint(1, 10)
        assert suppress(boxes, scores, max_iou, limit) == expected[:limit], trial


def test_square_crop_stays_inside_the_photo() -> None:
    photo = Image.new("RGB", (400, 200))
    crop = square_crop(photo, Box(0.9, 0.1, 0.1, 0.8))  # tall box at the right edge
    assert crop.size == (160, 160)
    assert square_crop(photo, Box(0, 0, 1, 1)).size == (200, 200)


def test_proposals_find_an_object_and_cover_the_photo() -> None:
    photo = Image.new("RGB", (600, 400), (230, 225, 215))
    ImageDraw.Draw(photo).rectangle((300, 100, 420, 300), fill=(30, 60, 160))
    boxes = propose(photo)
    target = Box(300 / 600, 100 / 400, 120 / 600, 200 / 400)
    assert max(b.iou(target) for b in boxes) > 0.7  # selective search outlines it
    grid = windows(600, 400, ProposalConfig())
    assert min(b.x for b in grid) == 0 and max(b.x + b.w for b in grid) > 0.999
    assert all(b.x >= 0 and b.x + b.w <= 1 + 1e-9 for b in boxes)


def test_proposals_are_the_same_on_every_call() -> None:
    """OpenCV orders selective search's regions with C's rand(): seeded, not by chance."""
    import random

    rnd = random.Random(3)
    photo = Image.new("RGB", (640, 420), (200, 200, 190))
    draw = ImageDraw.Draw(photo)
    for _ in range(40):
        x, y = rnd.randrange(600), rnd.randrange(380)
        fill = tuple(rnd.randrange(256) for _ in range(3))
        draw.rectangle((x, y, x + rnd.randint(10, 120), y + rnd.randint(10, 120)), fill=fill)
    first = propose(photo)
    assert all(propose(photo) == first for _ in range(4))
