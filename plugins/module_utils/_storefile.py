# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
# Plain standard-library Python.
"""Small JSON documents on the shared store that several writers race for: VM claims, the cluster lease,
fenced marks.

Each *document* (``name``) is a directory of immutable *generations*::

    <directory>/<name>/0000000001.json
    <directory>/<name>/0000000002.json     <- the current generation is the highest number

A generation file is written completely to a temporary file first and then published with ``link(2)``, which
fails with ``EEXIST`` when the name is taken. That single system call is the whole protocol:

- ``create`` publishes generation 1: exactly one of any number of concurrent creators succeeds;
- ``replace`` (compare-and-replace) publishes generation ``expected + 1``: of all writers that read the same
  generation, exactly one succeeds, and a writer that read an older generation always fails;
- readers never see a partial document (a generation appears with its full content or not at all), and there
  is no moment in which a document is absent while it is being replaced, so no "delete and recreate" window;
- a writer that dies at any point leaves either nothing or a complete generation (plus, at worst, a temporary
  dot-file that readers ignore and ``prune`` removes).

Every generation carries ``owner``, ``generation``, ``created`` (the writer's clock, informational), ``ttl`` and
``released``. Expiry is judged from the file's mtime, which the store sets, plus ``ttl``; callers may add a skew
allowance. What "stale" means beyond that (another incident, another owner ...) is the caller's business:
``Document.data`` holds the caller's fields.

Requirements on the store: atomic ``link`` that fails with ``EEXIST`` (local file systems, NFS, CephFS, GlusterFS
all qualify; NFS's retransmitted-link false ``EEXIST`` is detected by comparing inodes), and directory listings that
show a published generation to the next reader. Old generations are removed by ``prune`` (keep >= 2); a writer
whose expected generation was pruned notices a higher generation after publishing and withdraws.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import time
import uuid as uuidlib

from ._errors import StoreError
from ._heartbeat import MAX_JSON_DEPTH, MAX_SAFE_INT, json_too_deep

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024
GENERATION_DIGITS = 10
MAX_OWNER = 256
TEMP_MAX_AGE = 600.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GENERATION_FILE = re.compile(r"^([0-9]{%d})\.json$" % GENERATION_DIGITS)


class Conflict(StoreError):
    """The document exists already (create) or is no longer at the expected generation (replace).

    ``current`` is the document as read right after the conflict (``None`` if it could not be read).
    """

    kind = "conflict"

    def __init__(self, msg: str, current=None):
        super().__init__(msg)
        self.current = current


class InvalidDocument(StoreError):
    """The current generation of a document is not a valid document (hand-edited, foreign, oversized ...)."""

    kind = "invalid_document"

    def __init__(self, msg: str, name: str = "", generation: int = 0):
        super().__init__(msg)
        self.name = name
        self.generation = generation


def validate_name(name, what: str = "document name") -> str:
    """Return ``name`` if it is a safe file name (letters, digits, ``._-``; no leading dot; at most 128)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise StoreError("invalid %s %r: use letters, digits, '.', '_', '-' (no leading dot, no '..', at most 128)"
                         % (what, str(name)[:80]), kind="invalid_input")
    return name


class Document:
    """One published generation of a document (immutable snapshot)."""

    __slots__ = ("kind", "name", "generation", "owner", "created", "ttl", "released", "data", "mtime", "path")

    def __init__(self, kind, name, generation, owner, created, ttl, released, data, mtime, path):
        self.kind = kind
        self.name = name
        self.generation = generation
        self.owner = owner
        self.created = created
        self.ttl = ttl
        self.released = released
        self.data = data
        self.mtime = mtime
        self.path = path

    @property
    def expires_at(self):
        """Unix time (store clock) after which the document has expired, or ``None`` if it never expires."""
        return None if self.ttl is None else self.mtime + self.ttl

    def expired(self, now: float | None = None, skew: float = 0.0) -> bool:
        """True once ``now`` is past the expiry plus ``skew`` seconds of allowance.

        Pass the store's clock (``DocumentStore.now()``): the expiry is on it, and a reader's own clock may be off by
        hours. The reader's wall clock is only the default for callers that have no store to ask.
        """
        if self.ttl is None:
            return False
        return (time.time() if now is None else now) > self.mtime + self.ttl + skew

    def live(self, now: float | None = None, skew: float = 0.0) -> bool:
        """Neither released nor expired: the owner still holds it."""
        return not self.released and not self.expired(now, skew)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "generation": self.generation,
            "owner": self.owner,
            "created": self.created,
            "ttl": self.ttl,
            "expires_at": self.expires_at,
            "released": self.released,
            "data": dict(self.data),
        }


def _is_number(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT  # math.isfinite() of a huge int raises OverflowError
    return isinstance(value, float) and math.isfinite(value)


def _validate_owner(owner) -> str:
    if not isinstance(owner, str) or not owner or len(owner) > MAX_OWNER or any(ord(c) < 32 for c in owner):
        raise StoreError("invalid owner %r: a non-empty printable string of at most %d characters"
                         % (str(owner)[:80], MAX_OWNER), kind="invalid_input")
    return owner


def _validate_ttl(ttl):
    if ttl is None:
        return None
    if not _is_number(ttl) or ttl <= 0:
        raise StoreError("invalid ttl %r: positive seconds or None" % (ttl,), kind="invalid_input")
    return float(ttl)


class DocumentStore:
    """The documents of one ``kind`` under one directory, e.g. ``DocumentStore(<store>/kvmha/claims, "claim")``.

    ``read`` returns the current generation or ``None``; ``create`` and ``replace`` publish a new one or raise
    ``Conflict``; ``release`` is a ``replace`` that marks the document released; ``prune`` removes old
    generations. No method ever deletes a document's current generation.
    """

    def __init__(self, directory: str, kind: str, max_bytes: int = DEFAULT_MAX_BYTES, file_mode: int = 0o644):
        self.directory = directory
        self.kind = validate_name(kind, "document kind")
        self.max_bytes = max_bytes
        self.file_mode = file_mode

    def now(self) -> float:
        """The store's clock: the mtime the store gives a probe file created now (then removed).

        Expiries are mtimes set by the store, so they are judged on the same clock - two controllers whose clocks
        are hours apart agree on whether a lease has expired. The probe goes into the nearest existing directory of
        this store (nothing is created by a reader). A store this process cannot write to (a read-only view, or one
        that is not there) falls back to the local clock; every writer of leases and marks can write, so it is never the judge.
        """
        directory = self.directory
        for _level in range(2):  # <store>/kvmha/<kind> -> <store>/kvmha -> <store>, never above the store
            if os.path.isdir(directory):
                break
            directory = os.path.dirname(directory)
        probe = os.path.join(directory, ".clock.%d.%s" % (os.getpid(), uuidlib.uuid4().hex[:12]))
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError:
            return time.time()
        try:
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            try:
                os.unlink(probe)
            except OSError:
                pass

    # ------------------------------------------------------------------------------------------- paths

    def doc_dir(self, name: str) -> str:
        return os.path.join(self.directory, validate_name(name))

    def _generation_path(self, name: str, generation: int) -> str:
        return os.path.join(self.doc_dir(name), "%0*d.json" % (GENERATION_DIGITS, generation))

    def names(self) -> list:
        """Names of the documents present (directories with a valid name), sorted."""
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError("cannot list %s: %s" % (self.directory, err.strerror or err)) from err
        return sorted(entry for entry in entries if _NAME.match(entry) and ".." not in entry)

    def _generations(self, name: str) -> list:
        directory = self.doc_dir(name)
        try:
            info = os.lstat(directory)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError("cannot stat %s: %s" % (directory, err.strerror or err)) from err
        if not stat.S_ISDIR(info.st_mode):
            raise InvalidDocument("%s is not a directory (a symbolic link or a file)" % directory, name)
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError("cannot list %s: %s" % (directory, err.strerror or err)) from err
        found = []
        for entry in entries:
            match = _GENERATION_FILE.match(entry)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    # ------------------------------------------------------------------------------------------- reading

    def read(self, name: str):
        """The current generation of ``name`` as a ``Document``, or ``None`` if there is none.

        Raises ``InvalidDocument`` when the current generation is not a valid document, ``StoreError`` when the
        store cannot be read.
        """
        for _attempt in range(5):
            generations = self._generations(name)
            if not generations:
                return None
            try:
                return self._read_generation(name, generations[-1])
            except FileNotFoundError:
                continue  # pruned between listing and opening: a newer generation exists, list again
        raise StoreError("%s/%s keeps changing while read" % (self.directory, name))

    def _read_generation(self, name: str, generation: int) -> Document:
        path = self._generation_path(name, generation)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise InvalidDocument("%s is a symbolic link" % path, name, generation) from None
            raise StoreError("cannot open %s: %s" % (path, err.strerror or err)) from err
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidDocument("%s is not a regular file" % path, name, generation)
            if info.st_size > self.max_bytes:
                raise InvalidDocument("%s is %d bytes, more than the %d-byte limit" % (path, info.st_size, self.max_bytes),
                                      name, generation)
            raw = os.read(fd, self.max_bytes + 1)
        except OSError as err:
            raise StoreError("cannot read %s: %s" % (path, err.strerror or err)) from err
        finally:
            os.close(fd)
        if len(raw) > self.max_bytes:
            raise InvalidDocument("%s grew beyond the %d-byte limit while read" % (path, self.max_bytes), name, generation)
        try:
            return self._parse(raw, name, generation, info.st_mtime, path)
        except ValueError as err:
            raise InvalidDocument("%s is not a valid %s document: %s" % (path, self.kind, err), name, generation) from None

    def _parse(self, raw: bytes, name: str, generation: int, mtime: float, path: str) -> Document:
        if json_too_deep(raw):  # json.loads would raise RecursionError, which no caller expects
            raise ValueError("nested deeper than %d levels" % MAX_JSON_DEPTH)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        checks = (
            ("version", lambda v: v == FORMAT_VERSION, "version %d" % FORMAT_VERSION),
            ("kind", lambda v: v == self.kind, "kind %r" % self.kind),
            ("name", lambda v: v == name, "name %r" % name),
            ("generation", lambda v: v == generation, "generation %d (its file name)" % generation),
            ("owner", lambda v: isinstance(v, str) and 0 < len(v) <= MAX_OWNER, "an owner string"),
            ("created", _is_number, "a unix time"),
            ("ttl", lambda v: v is None or (_is_number(v) and v > 0), "positive seconds or null"),
            ("released", lambda v: isinstance(v, bool), "a boolean"),
            ("data", lambda v: isinstance(v, dict), "an object"),
        )
        for key, check, what in checks:
            if key not in doc:
                raise ValueError("missing field %r" % key)
            if not check(doc[key]):
                raise ValueError("field %r must be %s" % (key, what))
        ttl = None if doc["ttl"] is None else float(doc["ttl"])
        return Document(self.kind, name, generation, doc["owner"], float(doc["created"]), ttl, doc["released"],
                        doc["data"], mtime, path)

    # ------------------------------------------------------------------------------------------- writing

    def create(self, name: str, owner: str, data: dict | None = None, ttl: float | None = None) -> Document:
        """Publish generation 1 of ``name``; raise ``Conflict`` (with ``current``) if the document exists."""
        if self._generations(name):
            raise Conflict("%s %s exists already" % (self.kind, name), self._read_quietly(name))
        return self._publish(name, 1, owner, data, ttl, released=False)

    def replace(self, name: str, expected, owner: str, data: dict | None = None, ttl: float | None = None,
                released: bool = False) -> Document:
        """Compare-and-replace: publish generation ``expected + 1`` if ``expected`` is still the current one.

        ``expected`` is the ``Document`` the caller read (or its generation number, e.g. from
        ``InvalidDocument.generation`` to supersede an unreadable generation). Raises ``Conflict`` when another
        writer got there first.
        """
        generation = expected if isinstance(expected, int) and not isinstance(expected, bool) else expected.generation
        if generation < 1:
            raise StoreError("expected generation must be at least 1", kind="invalid_input")
        return self._publish(name, generation + 1, owner, data, ttl, released)

    def release(self, current: Document, owner: str | None = None, data: dict | None = None) -> Document:
        """Publish a released copy of ``current`` (same data unless given) so that anyone may take it over."""
        return self.replace(current.name, current, owner or current.owner,
                            current.data if data is None else data, current.ttl, released=True)

    def _publish(self, name, generation, owner, data, ttl, released) -> Document:
        owner = _validate_owner(owner)
        ttl = _validate_ttl(ttl)
        data = dict(data or {})
        directory = self.doc_dir(name)
        created = time.time()
        body = {
            "version": FORMAT_VERSION, "kind": self.kind, "name": name, "generation": generation, "owner": owner,
            "created": created, "ttl": ttl, "released": bool(released), "data": data,
        }
        try:
            raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as err:
            raise StoreError("%s %s: data is not JSON-serialisable: %s" % (self.kind, name, err), kind="invalid_input") from None
        if len(raw) > self.max_bytes:
            raise StoreError("%s %s would be %d bytes, more than the %d-byte limit" % (self.kind, name, len(raw), self.max_bytes),
                             kind="invalid_input")
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as err:
            raise StoreError("cannot create %s: %s" % (directory, err.strerror or err)) from err
        self._generations(name)  # refuses a symlinked or non-directory document path
        final = self._generation_path(name, generation)
        tmp = os.path.join(directory, ".%0*d.%d.%s.tmp" % (GENERATION_DIGITS, generation, os.getpid(), uuidlib.uuid4().hex[:12]))
        try:
            won = self._link_new(tmp, final, raw, self.file_mode)
        except OSError as err:
            raise StoreError("cannot write %s: %s" % (final, err.strerror or err)) from err
        if not won:
            raise Conflict("%s %s generation %d was published by another writer" % (self.kind, name, generation),
                           self._read_quietly(name))
        newer = [g for g in self._generations(name) if g > generation]
        if newer:
            # Our expected generation had been pruned: the document had moved on long before we published.
            try:
                os.unlink(final)
            except OSError:
                pass
            raise Conflict("%s %s is at generation %d, newer than the expected %d" % (self.kind, name, newer[-1], generation - 1),
                           self._read_quietly(name))
        try:
            mtime = os.lstat(final).st_mtime
        except OSError:
            mtime = created
        return Document(self.kind, name, generation, owner, created, ttl, bool(released), data, mtime, final)

    @staticmethod
    def _link_new(tmp: str, final: str, raw: bytes, mode: int) -> bool:
        """Write ``raw`` to ``tmp``, then link it to ``final``. True if we published, False on EEXIST."""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                try:
                    os.link(tmp, final)
                    won = True
                except FileExistsError:
                    # NFS may answer a retransmitted, successful LINK with EEXIST: the inode tells.
                    try:
                        won = os.lstat(final).st_ino == os.fstat(fd).st_ino
                    except OSError:
                        won = False
            finally:
                os.close(fd)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if won:
            _fsync_dir(os.path.dirname(final))
        return won

    def _read_quietly(self, name: str):
        try:
            return self.read(name)
        except StoreError:
            return None

    # ------------------------------------------------------------------------------------------- upkeep

    def prune(self, name: str, keep: int = 2, now: float | None = None) -> int:
        """Remove all but the ``keep`` (>= 2) newest generations and stale temporary files; return how many."""
        if keep < 2:
            raise StoreError("prune must keep at least 2 generations", kind="invalid_input")
        removed = 0
        generations = self._generations(name)
        directory = self.doc_dir(name)
        for generation in generations[:-keep]:
            try:
                os.unlink(self._generation_path(name, generation))
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as err:
                raise StoreError("cannot remove %s: %s" % (self._generation_path(name, generation), err.strerror or err)) from err
        now = time.time() if now is None else now
        try:
            entries = os.listdir(directory)
        except OSError:
            return removed
        for entry in entries:
            if entry.startswith(".") and entry.endswith(".tmp"):
                path = os.path.join(directory, entry)
                try:
                    if now - os.lstat(path).st_mtime > TEMP_MAX_AGE:
                        os.unlink(path)
                        removed += 1
                except OSError:
                    pass
        return removed


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
