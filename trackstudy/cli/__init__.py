"""The ``trackstudy`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
namespace, returning an exit status or None). Modules are discovered, so adding a command
means adding a module. Errors derived from :class:`trackstudy.errors.TrackstudyError`
(and a few well-understood OS errors) are printed as one line on stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from trackstudy.errors import TrackstudyError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except TrackstudyError as exc:
        print(f"trackstudy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"trackstudy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `trackstudy inspect ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"trackstudy {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
