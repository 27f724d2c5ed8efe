"""allocator: where and when AI workloads run across leased data centers."""

from allocator.errors import AllocatorError, InputError, Problem
from allocator.io import dump_instance, instance_from_dict, instance_from_frames, load_instance
from allocator.schema import Instance
from allocator.sweep import sweep  # the function; the module stays importable as allocator.sweep

__version__ = "0.1.0"

__all__ = [
    "AllocatorError",
    "InputError",
    "Instance",
    "Problem",
    "dump_instance",
    "instance_from_dict",
    "instance_from_frames",
    "load_instance",
    "sweep",
]
