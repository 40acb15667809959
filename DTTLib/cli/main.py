"""``dtt`` entry point: one parser, subcommands registered from small modules.

Errors the user can act on (``DTTError``) print one line and exit 2; anything else prints
one line and exits 1 unless ``--debug`` asks for the traceback. Never a stack trace by
default.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Sequence

from DTTLib import __version__
from DTTLib.errors import DTTError

#: A full disk, a quota, a read-only or forbidden folder: the user can fix these, so one line, exit 2.
OUT_OF_SPACE_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)

Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    """Every ``DTTLib/cli/<command>.py`` with an ``add_parser``, plus commands of other packages.

    Command modules only build parsers at import (their work imports lazily), so discovering
    them all stays cheap and a new command needs no edit here.
    """
    import DTTLib.cli  # noqa: PLC0415

    registrars: list[Registrar] = []
    for info in sorted(pkgutil.iter_modules(DTTLib.cli.__path__), key=lambda i: i.name):
        if info.name in ("main", "output"):
            continue
        module = importlib.import_module(f"DTTLib.cli.{info.name}")
        if hasattr(module, "add_parser"):
            registrars.append(module.add_parser)
    for module_name, function_name in (("DTTLib.response.cli", "add_recist_parser"),
                                       ("DTTLib.growth.cli", "add_fit_parser")):
        registrars.append(getattr(importlib.import_module(module_name), function_name))
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtt", description="DigitalTwinTumor: longitudinal tumour digital twin (headless).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in _registrars():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse enforces a subcommand
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except DTTError as error:
        if args.debug:
            traceback.print_exc()
        print(f"dtt {args.command}: error: {error.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dtt env --json | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print(f"dtt {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in OUT_OF_SPACE_OR_READ_ONLY:
            return _internal_error(args, error)
        if args.debug:
            traceback.print_exc()
        where = f" {error.filename}" if error.filename else ""
        kept = " (outputs of an earlier run are kept: nothing was swapped in)" if args.command == "run" else ""
        print(f"dtt {args.command}: error: cannot write{where}: {error.strerror} — free disk space or choose "
              f"a writable folder, then run again{kept}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - last line of defence for users
        return _internal_error(args, error)


def _internal_error(args: argparse.Namespace, error: BaseException) -> int:
    if args.debug:
        traceback.print_exc()
    print(f"dtt {args.command}: internal error: {type(error).__name__}: {error} "
          "(re-run with --debug for the traceback and please report it)", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
