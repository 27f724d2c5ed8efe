"""Problems found in an instance, and the exceptions that carry them.

Every problem names where it is (a file and row, or an entity and its id), what is wrong
and how to fix it, so a planner can act on it without reading a traceback:

    (jobs, llama-405b) | options[0].gpus: 16384 H100 but no site offers more than 12000;
    add capacity or allow another GPU type
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

MAX_SHOWN = 5  # offenders listed per rule before "(+N more)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (severity "error") or suspicious (severity "warning") in an instance."""

    entity: str  # "jobs", "sites", "file", "services", ...
    id: str  # the entity's id, or a file name with row/column
    message: str  # what is wrong, naming the field and the value
    fix: str = ""  # how to fix it
    severity: str = "error"
    rule: str = ""  # short machine-readable rule name, e.g. "unknown-gpu-type"

    def __str__(self) -> str:
        text = f"({self.entity}, {self.id}) | {self.message}"
        if self.fix:
            text += f"; {self.fix}"
        return text


def format_problems(problems: list[Problem], limit: int = MAX_SHOWN) -> list[str]:
    """Render problems as lines, at most `limit` per rule, then `(+N more)`."""
    lines: list[str] = []
    by_rule: dict[str, list[Problem]] = {}
    for p in problems:
        by_rule.setdefault(p.rule or p.message, []).append(p)
    for group in by_rule.values():
        lines.extend(str(p) for p in group[:limit])
        if len(group) > limit:
            lines.append(f"  (+{len(group) - limit} more like this)")
    return lines


def describe_problems(source: str, problems: list[Problem], subject: str) -> str:
    """"<source>: N problems <subject>" and then the problems, one line each."""
    head = f"{source}: " if source else ""
    n = len(problems)
    return "\n".join([f"{head}{n} problem{'s' if n != 1 else ''} {subject}", *format_problems(problems)])


class AllocatorError(Exception):
    """Base class of allocator's own errors."""


@dataclass
class InputError(AllocatorError):
    """The instance cannot be used as given (CLI exit code 2)."""

    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    #: what the problems are in, for the heading ("3 problems in the instance")
    subject: ClassVar[str] = "in the instance"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return describe_problems(self.source, [p for p in self.problems if p.severity == "error"],
                                 self.subject)


class ModelTooLargeError(AllocatorError):
    """The model would not fit in memory; raised before building it (exit code 2)."""
