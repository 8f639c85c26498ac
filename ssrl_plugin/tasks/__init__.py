"""Built-in pretext tasks; importing this package registers them."""

from ..paper import BUILTIN_ORDER, PAPER_COUNTS  # noqa: F401
from . import crop, depth_order, flip, position, shuffle  # noqa: F401
