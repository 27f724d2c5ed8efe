"""AI model profiles: the ones shipped in the package (allocator/models/*.yaml, read with
importlib.resources, so an installed allocator has them wherever the instance is) and a
folder of the user's own (``profiles_dir``, else the nearest ``models/`` above the instance),
which wins for an id it holds.

    locate(pid, folder)     -> Profile file of that id, or None (folder first, then packaged)
    known(folder)           -> every profile id an instance with that folder can use
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

PACKAGED = "packaged"
FOLDER = "folder"
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ProfileFile:
    """Where profile ``id`` is: ``source`` is "folder" (``location`` a path) or "packaged"."""

    id: str
    source: str
    location: Path | Traversable

    @contextlib.contextmanager
    def path(self) -> Iterator[Path]:
        """A file-system path to read it from (a packaged file in a zip is extracted)."""
        if isinstance(self.location, Path):
            yield self.location
        else:
            with resources.as_file(self.location) as p:
                yield Path(p)


def packaged_dir() -> Traversable:
    return resources.files("allocator") / "models"


def _files(folder: Path | Traversable | None) -> dict[str, Path | Traversable]:
    if folder is None or not folder.is_dir():
        return {}
    out: dict[str, Path | Traversable] = {}
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        stem, dot, ext = f.name.rpartition(".")
        if dot and f".{ext}" in SUFFIXES and f.is_file() and stem not in out:
            out[stem] = f
    return out


def _safe_id(pid: str) -> bool:
    return bool(pid) and "/" not in pid and "\\" not in pid and not pid.startswith(".")


def locate(pid: str, folder: Path | None) -> ProfileFile | None:
    """The file of profile ``pid``: in ``folder`` if it has one, else the packaged one."""
    if not _safe_id(pid):
        return None
    for source, where in ((FOLDER, folder), (PACKAGED, packaged_dir())):
        found = _files(where).get(pid)
        if found is not None:
            return ProfileFile(pid, source, found)
    return None


def known(folder: Path | None) -> list[ProfileFile]:
    """Every profile an instance whose profile folder is ``folder`` can name, by id; the
    folder's file where both have one."""
    found = {pid: ProfileFile(pid, PACKAGED, f) for pid, f in _files(packaged_dir()).items()}
    found.update({pid: ProfileFile(pid, FOLDER, f) for pid, f in _files(folder).items()})
    return [found[k] for k in sorted(found)]
