"""parse_crop / Crop.box: the ``crop=x,y,w,h`` query parameter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoplens.errors import BadParameter
from shoplens.models.decode import Crop, parse_crop


def test_parses_fractions() -> None:
    assert parse_crop("0.1,0.2,0.5,0.25") == Crop(0.1, 0.2, 0.5, 0.25)
    assert parse_crop(" 0 , 0 , 1 , 1 ") == Crop(0.0, 0.0, 1.0, 1.0)


def test_tiny_overshoot_is_clamped() -> None:
    crop = parse_crop("0.3333,0,0.6668,1")
    assert crop.x + crop.w == pytest.approx(1.0)
    assert crop.x + crop.w <= 1.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0.1,0.2,0.3",
        "0.1,0.2,0.3,0.4,0.5",
        "a,b,c,d",
        "0,0,0,1",  # zero width
        "0,0,1,-0.5",
        "-0.1,0,0.5,0.5",
        "1,0,0.5,0.5",  # starts at the right edge
        "0.5,0.5,0.6,0.1",  # x + w > 1
        "0,0.5,0.5,0.7",  # y + h > 1
        "nan,0,1,1",
        "0,0,inf,1",
        "10,20,30,40",  # pixels, not fractions
    ],
)
def test_malformed_crops_are_bad_parameters(text: str) -> None:
    with pytest.raises(BadParameter) as info:
        parse_crop(text)
    assert info.value.status == 400
    assert "fractions" in info.value.message


@given(
    x=st.floats(0, 0.99),
    y=st.floats(0, 0.99),
    w=st.floats(0.001, 1),
    h=st.floats(0.001, 1),
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
)
def test_box_always_inside_the_image(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> None:
    crop = parse_crop(f"{x},{y},{min(w, 1 - x)},{min(h, 1 - y)}")
    left, top, right, bottom = crop.box(width, height)
    assert 0 <= left < right <= width
    assert 0 <= top < bottom <= height
    # Rounded outwards: never smaller than the requested region.
    assert right - left >= min(width, int(crop.w * width))
    assert bottom - top >= min(height, int(crop.h * height))
