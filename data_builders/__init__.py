"""Dataset builders: turn sources into parquet datasets for EasyR1 and verl (see :func:`build`)."""

from .pipeline import BuildResult, build  # noqa: F401
