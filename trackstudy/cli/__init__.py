"""The ``trackstudy`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
namespace, returning an exit status or None). Modules are discovered, so adding a command
means adding a module. Every error reaches the user as one line on stderr with exit status 2:
:class:`trackstudy.errors.TrackstudyError` as it is, an OS error with the user's path, an
unexpected exception with a request to report it (``TRACKSTUDY_DEBUG=1`` shows the traceback
instead). An interrupt prints one line and exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys

from trackstudy.errors import TrackstudyError

#: Namespace attributes that hold user paths, and the option named in messages. Relative paths
#: are taken from the working directory (the library resolves them from the project root).
PATH_OPTIONS = {"path": "PATH", "paths": "PATH", "data": "--data", "out": "--out", "submission": "--submission",
                "run": "--run", "config": "--config", "params": "--params", "particles_from": "--particles-from",
                "event": "--event", "init_from": "--init-from", "val_data": "--val-data"}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trackstudy",
        description="Transformer-based charged-particle track reconstruction study toolkit.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Make the user paths of ``args`` absolute from the working directory (checked for length)."""
    from trackstudy.cli._paths import user_path

    for attr, option in PATH_OPTIONS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if isinstance(value, list):
            setattr(args, attr, [user_path(v, option) for v in value])
        else:
            setattr(args, attr, user_path(value, option))
    return args


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")


def _shown_path(name) -> str:
    """A file name for a message: a hidden temporary file of an atomic write becomes its final name."""
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    head, tail = os.path.split(text)
    m = _TEMP_NAME.match(tail)
    return os.path.join(head, m.group("name")) if m else text


def os_error_line(exc: OSError) -> str:
    """One line for an OS error: the user's path and what went wrong."""
    what = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if exc.filename is not None:
        line = f"{_shown_path(exc.filename)}: {what}"
        if exc.filename2 is not None:
            line += f" (-> {_shown_path(exc.filename2)})"
        return line
    return what


def _interrupted(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt is in the exception's chain (compiled code may wrap it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("TRACKSTUDY_DEBUG", "") not in ("", "0")
    name = f"trackstudy {args.command}"
    try:
        status = args.func(absolute_paths(args))
    except TrackstudyError as exc:
        print(f"{name}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `trackstudy inspect ... | head`
        sys.stderr.close()
        return 0
    except MemoryError:
        if debug:
            raise
        print(f"{name}: error: out of memory (try fewer events or smaller sizes)", file=sys.stderr)
        return 2
    except OSError as exc:
        if debug:
            raise
        print(f"{name}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last net: one line, never a traceback
        if _interrupted(exc):
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        print(f"{name}: internal error: {type(exc).__name__}{': ' + text if text else ''} (please report: "
              f"this is a bug in trackstudy; TRACKSTUDY_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
