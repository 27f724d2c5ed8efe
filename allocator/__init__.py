"""allocator: where and when AI workloads run across leased data centers."""

# allocator.solve is the API function; the solver module of the same name (which imports no
# Pyomo until it runs) is loaded first so that a later ``from allocator.solve import ...`` finds
# it loaded and does not rebind the package attribute to the module.
import allocator.solve  # noqa: F401
from allocator.api import solve
from allocator.errors import AllocatorError, InputError, Problem
from allocator.io import dump_instance, instance_from_dict, instance_from_frames, load_instance
from allocator.schema import Instance
from allocator.solve import dual_totals, lp_duals
from allocator.sweep import sweep  # the function; the module stays importable as allocator.sweep

# ...and the module's documented duals functions stay reachable by their dotted names
# (allocator.solve.dual_totals, allocator.solve.lp_duals) through the function
solve.dual_totals = dual_totals
solve.lp_duals = lp_duals

__version__ = "0.1.0"

__all__ = [
    "AllocatorError",
    "InputError",
    "Instance",
    "Problem",
    "dual_totals",
    "dump_instance",
    "instance_from_dict",
    "instance_from_frames",
    "load_instance",
    "lp_duals",
    "solve",
    "sweep",
]
