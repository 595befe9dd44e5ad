"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

from ricl.types import Box

# Boxes at least 1e-6 wide and high (far below a pixel): smaller areas underflow to 0.0 in
# double precision, where an IoU of zero-area sets is undefined.
MIN_SIDE = 1e-6


@st.composite
def boxes(draw) -> Box:
    x0 = draw(st.floats(0, 1 - MIN_SIDE))
    y0 = draw(st.floats(0, 1 - MIN_SIDE))
    x1 = draw(st.floats(x0 + MIN_SIDE, 1))
    y1 = draw(st.floats(y0 + MIN_SIDE, 1))
    return Box(x0, y0, x1, y1)
