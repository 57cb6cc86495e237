"""Who owns which spool files (see `_spool` for the layout): this process's lock, and adopting what dead
owners left behind.

A process that finds a lock file nobody holds (its owner died, or exited during an outage) adopts that owner's
segments: it renames them to its own name while holding the dead owner's lock, then removes the lock file.
The lock file is flock-ed before it is renamed into place, so a starting process is never mistaken for a dead
one. Everything here is directory-level; indexing the adopted segments' frames is `Spool._load`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import os

from . import _diag

try:
    import fcntl
except ImportError:  # Windows: no spool (Settings refuses spool_dir there), the rest of the SDK works
    fcntl = None  # type: ignore[assignment]

__all__ = ["adopt_orphans", "take_lock"]


def take_lock(directory: str, owner: str) -> int:
    """Create `<owner>.lock` already locked: it appears (rename) only once we hold it. Returns its fd, whose
    flock lasts until it is closed. Raises OSError when the directory cannot hold it."""
    temporary = os.path.join(directory, f".{owner}.lock.tmp")
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, os.path.join(directory, f"{owner}.lock"))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return fd


def adopt_orphans(directory: str, owner: str) -> list[str]:
    """Rename every segment of an owner that is gone to `owner`'s name; the new names, oldest first (a
    segment's name starts with its creation time). Failures are reported on stderr (`_diag`), never raised."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        _diag.report("spool", f"cannot list spool_dir {directory!r}: {exc}")
        return []
    locks: set[str] = set()
    owners: set[str] = set()
    for name in names:
        if name.endswith(".lock"):
            locks.add(name[: -len(".lock")])
        elif name.endswith(".seg") and name.count(".") == 2:
            owners.add(name.split(".")[1])
        elif name.endswith(".lock.tmp"):
            _remove_stale_temporary(os.path.join(directory, name))
    adopted: list[str] = []
    for other in sorted(locks | owners):
        if other == owner:
            continue
        if other in locks:
            adopted.extend(_adopt_locked(directory, other, owner))
        else:  # segments whose lock file is gone: left by an adopter that crashed mid-way
            adopted.extend(_rename_segments(directory, other, owner))
    return sorted(adopted)


def _remove_stale_temporary(path: str) -> None:
    """A `.lock.tmp` nobody holds is what a crash between create and rename leaves."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        finally:
            os.close(fd)


def _adopt_locked(directory: str, dead: str, owner: str) -> list[str]:
    path = os.path.join(directory, f"{dead}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return []  # adopted and removed by someone else meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return []  # its owner is alive
            raise
        try:  # the file we locked may have been adopted and unlinked between our open and flock
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return []
        except FileNotFoundError:
            return []
        names = _rename_segments(directory, dead, owner)
        os.unlink(path)  # only after every segment is ours: a crash before this leaves a lock to adopt
        return names
    except OSError as exc:
        _diag.report("spool", f"cannot adopt spool of {dead}: {exc}")
        return []
    finally:
        os.close(fd)


def _rename_segments(directory: str, dead: str, owner: str) -> list[str]:
    suffix = f".{dead}.seg"
    taken = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(suffix):
            continue
        new = f"{name[: -len(suffix)]}.{owner}.seg"
        try:
            os.rename(os.path.join(directory, name), os.path.join(directory, new))
        except FileNotFoundError:
            continue  # another process adopted it first
        taken.append(new)
    return taken
