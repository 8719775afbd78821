"""Checking output paths and writing them atomically (temp file beside the target, then rename)."""
from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import stat
from pathlib import Path
from typing import Iterator, Sequence

from avmix.errors import InputError, OutputError, UsageError

STDIO = "-"
SIDECAR_ROOM = len(".timeline.json") + 2  # OUT.timeline.json, .OUT.avmix-work must fit in NAME_MAX too


def check_input(path: str | os.PathLike) -> Path:
    """Raise InputError unless ``path`` is an existing, readable, non-empty regular file."""
    if os.fspath(path) == STDIO:
        return Path(STDIO)
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p)
    if p.is_dir():
        raise InputError("is a directory, not a file", path=p)
    mode = p.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):  # /dev/zero would be read forever
        raise InputError("is a device or socket, not a file", path=p)
    if not os.access(p, os.R_OK):
        raise InputError("permission denied", path=p)
    if p.is_file() and p.stat().st_size == 0:  # pipes (<(...), FIFOs) report 0 bytes
        raise InputError("file is empty (0 bytes)", path=p)
    return p


def stem_name(index: int, label: str, suffix: str = ".wav") -> str:
    """``NN-slug.wav``: a source's stem file (``.mp4``: its picture stem), by position and label."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:40] or "track"
    return f"{stem_prefix(index)}{slug}{suffix}"


def stem_prefix(index: int) -> str:
    """How every stem file name of the source at ``index`` begins."""
    return f"{index:02d}-"


def file_key(path: str | os.PathLike) -> tuple[str, int, int] | None:
    """(absolute path, mtime in ns, size) of a regular file, the key of what avmix remembers about it
    within a run; None when it is not one (a pipe or FIFO can differ each time it is read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return os.path.abspath(path), st.st_mtime_ns, st.st_size


def read_text(path: str | os.PathLike, what: str = "text") -> str:
    """The UTF-8 contents of a small file; InputError naming it when it is missing, a directory,
    unreadable or not UTF-8 (``what`` names the kind of file in that message: "JSON", "jobs")."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path=p) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=p) from None
    except PermissionError:
        raise InputError("permission denied", path=p) from None
    except UnicodeDecodeError:
        raise InputError(f"not a UTF-8 {what} file", path=p) from None


def check_output(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (), *, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done."""
    if os.fspath(path) == STDIO:
        return Path(STDIO)
    if os.fspath(path).endswith(("/", os.sep)):  # Path() would drop the slash and write a file there
        raise OutputError("names a directory (it ends with '/'); give a file name", path=path)
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError("output directory does not exist", path=parent, hint="create it first")
    if not parent.is_dir():
        raise OutputError("output directory is not a directory", path=parent)
    if p.is_dir():
        raise OutputError("output is a directory", path=p)
    check_regular(p)
    if any(same_path(p, i) for i in inputs):
        raise OutputError("output is the same file as an input; refusing to overwrite it", path=p)
    if p.exists() and not overwrite:
        raise OutputError("already exists", path=p, hint="pass -y/--overwrite to replace it")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    if len(os.fsencode(p.name)) + SIDECAR_ROOM > name_max:
        raise OutputError(f"file name too long (at most {name_max - SIDECAR_ROOM} bytes, to leave room for "
                          "the files avmix writes beside it, such as OUT.timeline.json)", path=p)
    if not os.access(parent, os.W_OK):
        raise OutputError("output directory is not writable", path=parent)
    return p


def check_regular(path: str | os.PathLike) -> None:
    """An existing target that is not a regular file (a FIFO, a device, a socket) is never replaced, -y or
    not: renaming over it would turn /dev/null or a pipe another program reads into a plain file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory has its own message
        raise OutputError("is not a regular file; refusing to replace it", path=path)


def file_id(path: str | os.PathLike) -> tuple[str, tuple[int, int] | None]:
    """(real path, (device, inode) if it exists): symlinks, ``..`` and hard links give one identity."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return real, None
    return real, (st.st_dev, st.st_ino)


def file_keys(path: str | os.PathLike) -> list:
    """The keys of :func:`file_id` that exist: [real path] or [real path, (device, inode)]."""
    real, ino = file_id(path)
    return [real] if ino is None else [real, ino]


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """``a`` and ``b`` name one file or folder: the same path once symlinks are resolved, or (both
    existing) the same file under two names (a hard link). Standard input/output ('-') is never a path."""
    if STDIO in (os.fspath(a), os.fspath(b)):
        return False
    return bool(set(file_keys(a)) & set(file_keys(b)))


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """``path`` lies below ``folder`` (not the folder itself), symlinks resolved."""
    p, d = os.path.realpath(path), os.path.realpath(folder)
    return p != d and os.path.commonpath([p, d]) == d


def check_apart(writes: Sequence[tuple[str, str | os.PathLike]], reads: Sequence[tuple[str, str | os.PathLike]]
                ) -> None:
    """Before any work: nothing a command writes is a file it reads (OutputError), and no two of the
    things it writes share a path (UsageError). Both are (role, path) pairs; the role is what the
    message calls the file ("--preview", "an input (--image)"). Each path is resolved once."""
    read: dict = {}
    for what, r in reads:
        if os.fspath(r) != STDIO:
            for k in file_keys(r):
                read.setdefault(k, what)
    written: dict = {}
    for role, w in writes:
        if os.fspath(w) == STDIO:
            continue
        keys = file_keys(w)
        for k in keys:
            if k in read:
                raise OutputError(f"{role} is the same file as {read[k]}; refusing to overwrite it", path=w)
        for k in keys:
            if k in written:
                raise UsageError(f"{role} and {written[k]} are the same path", path=w, hint="give each its own path")
        for k in keys:
            written.setdefault(k, role)


def check_audio_outputs(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                        timeline: str | os.PathLike | None = None, reference: str | os.PathLike | None = None) -> None:
    """``mix``, ``concat``, ``overlay``: the output and its timeline (given, or beside the output) never
    replace an input or the reference, nor each other."""
    reads = [("an input", p) for p in inputs]
    if reference is not None:
        reads.append(("an input (--reference)", reference))
    writes = [("the output", output)]
    if timeline is not None:
        writes.append(("--timeline", timeline))
    elif os.fspath(output) != STDIO:
        writes.append(("the timeline", sidecar(output)))
    check_apart(writes, reads)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The temporary name keeps the target's extension so that tools choosing a format by extension work.
    """
    p = Path(path)
    ext = suffix if suffix is not None else p.suffix
    tmp_path = None
    try:
        tmp_path = _temp_beside(p, ext)
        yield tmp_path
        try:
            os.replace(tmp_path, p)
        except OSError as e:  # name the target, not our temp file
            raise OutputError(f"cannot write it ({e.strerror})", path=p) from None
        _pending.pop(tmp_path, None)
    except BaseException:  # also GeneratorExit: a with-block abandoned before its body started
        if tmp_path is not None:
            _discard(tmp_path)
        raise


def _create_temp(parent: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file ``parent/prefix<random>suffix`` (mode from the umask, as open() gives).

    The name is registered for removal at exit *before* the file exists, so Ctrl-C at any instant
    cannot leave a temp file that nothing knows of."""
    parent = Path(os.path.abspath(parent))
    for _ in range(100):
        tmp = parent / f"{prefix}{os.urandom(4).hex()}{suffix}"
        _pending[tmp] = os.getpid()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            _pending.pop(tmp, None)
            continue
        os.close(fd)  # (an interrupt before this leaks one descriptor, never a file: tmp is registered)
        return tmp
    raise FileExistsError(f"no free temporary name in {parent}")


def _temp_beside(p: Path, ext: str) -> Path:
    """The temp file for ``p``; a failure to create it is the output directory's error, named so (the
    temp file's name means nothing to the user). check_output looks first, but it cannot see a
    directory that changes after it looked, or a file system that refuses what access() allowed."""
    parent = p.parent if str(p.parent) else Path(".")
    try:
        return _create_temp(parent, f".{p.stem[:40]}.", ".part" + ext)
    except OSError as e:
        why = e.strerror or str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"output directory is not writable ({why})", path=parent) from None
        raise OutputError(f"cannot create a file in the output directory ({why})", path=parent) from None


# temp files made by atomic_path and not yet renamed or removed; a caller interrupted at an unlucky
# moment (between creating a temp file and entering its own try block) may never clean up, so
# whatever is left at exit is removed then (only by the process that made it, not a forked child)
_pending: dict[Path, int] = {}


def _discard(tmp: Path) -> None:
    _pending.pop(tmp, None)
    with contextlib.suppress(OSError):
        tmp.unlink()


@atexit.register
def _remove_pending() -> None:
    for tmp, pid in list(_pending.items()):
        if pid == os.getpid():
            _discard(tmp)


def sidecar(output: str | os.PathLike, kind: str = "timeline") -> Path:
    """``OUT.timeline.json`` beside ``OUT``."""
    p = Path(output)
    return p.with_name(p.name + f".{kind}.json")


def check_sidecar(output: str | os.PathLike, *, overwrite: bool) -> None:
    """The default ``OUT.timeline.json`` is an output too: an existing one is replaced only with -y."""
    side = sidecar(output)
    if side.is_dir():
        raise OutputError("is a directory, where avmix writes the timeline", path=side,
                          hint="remove it, or pass --timeline PATH")
    check_regular(side)
    if side.exists() and not overwrite:
        raise OutputError("already exists", path=side, hint="pass -y/--overwrite to replace it, or --timeline PATH")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


ENV_CACHE = "AVMIX_CACHE"


def cache_root() -> Path:
    """The user cache directory avmix keeps across runs (not created): $AVMIX_CACHE, else
    $XDG_CACHE_HOME/avmix, else ~/.cache/avmix."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "avmix"
    return Path.home() / ".cache" / "avmix"
