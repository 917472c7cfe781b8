"""Paths given on the command line: made absolute from the working directory, checked for
length, and output paths checked before any work (existence, symlinks, folders, write
permission, and never one of the command's own inputs)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from trackstudy.errors import ConfigError

#: Linux limits: one path component (NAME_MAX) and a whole path (PATH_MAX).
NAME_MAX = 255
PATH_MAX = 4096

#: Kaggle-layout event files: an output must never take the name of one inside a data folder.
_EVENT_FILE = re.compile(r"^event\d+-(hits|truth|particles|cells)\.csv(\.gz)?$")


def user_path(value: str | os.PathLike, option: str) -> Path:
    """A path from the command line: ``~`` expanded, relative to the working directory, and
    short enough for the operating system (ConfigError naming ``option`` otherwise)."""
    text = os.path.expanduser(os.fspath(value))
    if not text:
        raise ConfigError(f"{option}: empty path")
    if "\0" in text:
        raise ConfigError(f"{option} {text!r}: a path cannot contain a NUL character")
    path = Path(text)
    if not path.is_absolute():
        path = Path(os.getcwd()) / path
    long = [c for c in path.parts if len(os.fsencode(c)) > NAME_MAX]
    if long:
        raise ConfigError(f"{option} {_short(text)}: file name too long (a path component has "
                          f"{len(os.fsencode(long[0]))} bytes; at most {NAME_MAX} allowed)")
    if len(os.fsencode(str(path))) >= PATH_MAX:
        raise ConfigError(f"{option} {_short(text)}: file name too long (the path has "
                          f"{len(os.fsencode(str(path)))} bytes; at most {PATH_MAX - 1} allowed)")
    return path


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else f"{text[:40]}...{text[-30:]}"


def _real(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def check_output_file(path: Path, option: str, force: bool, inputs=(), input_dirs=()) -> Path:
    """Check an output file before the work that produces it; returns the file to write (a
    symlink's target). Refused: a symlink that leads nowhere (dangling, a loop) or to something
    other than a regular file, a folder, an existing file without ``force``, one of ``inputs``
    or a TrackML event file inside one of ``input_dirs`` (even with ``force``), and a folder
    that cannot be created or written."""
    target = path
    if os.path.islink(path):
        real = _real(path)
        if real is None:
            raise ConfigError(f"{option} {path}: a symbolic link that leads to no file (dangling, or a loop); "
                              f"remove it or give another name")
        if not real.is_file():
            raise ConfigError(f"{option} {path}: a symbolic link to {real}, which is not a regular file")
        target = real
    elif path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder (expected the name of a file to write)")
    elif os.path.lexists(path) and not path.is_file():
        raise ConfigError(f"{option} {path}: exists and is not a regular file")
    real_target = _real(target) or (_real(target.parent) or target.parent) / target.name
    for item in inputs:
        if item is not None and _real(Path(item)) == real_target:
            raise ConfigError(f"{option} {path}: is an input of this command ({item}); "
                              f"refusing to overwrite it, even with --force")
    for folder in input_dirs:
        real_dir = _real(Path(folder))
        if real_dir is not None and real_target.parent == real_dir and _EVENT_FILE.match(real_target.name):
            raise ConfigError(f"{option} {path}: is an event file of the input data {folder}; "
                              f"refusing to overwrite it, even with --force")
    if os.path.lexists(target) and not force:
        raise ConfigError(f"{option} {path}: exists (use --force to overwrite)")
    check_writable_folder(target.parent, option, path)
    return target


def check_writable_folder(folder: Path, option: str, shown: Path | None = None) -> None:
    """The nearest existing folder at or above ``folder`` must be a folder we may write into."""
    shown = shown if shown is not None else folder
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    real = _real(probe)
    if real is None:
        raise ConfigError(f"{option} {shown}: {probe} is a symbolic link that leads nowhere")
    if not real.is_dir():
        raise ConfigError(f"{option} {shown}: {probe} exists and is not a folder")
    if not os.access(real, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {shown}: cannot write in {probe} (permission denied)")
