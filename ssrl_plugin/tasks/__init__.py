"""Built-in pretext tasks; importing this package registers them."""

from ..paper import BUILTIN_ORDER, PAPER_COUNTS  # noqa: F401
from . import camera_motion, crop, cross_view, depth_order, flip, position, shuffle, temporal_order  # noqa: F401
