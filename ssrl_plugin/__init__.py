"""spatial-ssrl: the Spatial-SSRL pretext tasks (CVPR 2026) as a library for EasyR1 and verl.

Public API (no torch, transformers, ray or trainer is imported)::

    from ssrl_plugin import list_tasks, create_task, create_mix, ProceduralDataset
"""

__version__ = "0.1.0"

from .core import DepthMap, Sample, Source  # noqa: E402
from .dataset import ProceduralDataset  # noqa: E402
from .errors import ConfigError, Reject, SourceError, SSRLError  # noqa: E402
from .registry import Task, TaskConfig, create_mix, create_task, get_task_class, list_tasks, register_task  # noqa: E402

__all__ = [
    "ConfigError", "DepthMap", "ProceduralDataset", "Reject", "SSRLError", "Sample", "Source", "SourceError",
    "Task", "TaskConfig", "__version__", "create_mix", "create_task", "get_task_class", "list_tasks", "register_task",
]
