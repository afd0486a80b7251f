"""Hypothesis settings and box strategy shared by the geometry tests (test_boxes, test_utils)."""

from hypothesis import settings
from hypothesis import strategies as st

FAST = settings(max_examples=40, deadline=None)


def box_strategy(max_coord=100):
    """Integer pixel boxes (y1, x1, y2, x2) with positive height and width."""
    return st.tuples(
        st.integers(0, max_coord - 1), st.integers(0, max_coord - 1), st.integers(1, 50), st.integers(1, 50)
    ).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))
