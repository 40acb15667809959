"""``dtt models``: the model catalog, and the weights on this computer (list, download, use a
local folder, verify, delete).

Why a command: weights live in one user cache (``$DTT_CACHE_DIR`` or
``~/.cache/DigitalTwinTumor``), never in the install folder, and users must be able to see
what is there, fetch a model once (e.g. before going offline), point to weights they copied by
hand, and delete downloads to free disk — the complaints USERS.md lists for similar extensions.
Only ``download`` uses the network, and only when asked.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from DTTLib.cli.output import print_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, download, verify or delete model weights")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="every catalog model and where its weights are")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=run_list)
    download = actions.add_parser("download", help="fetch a model's weights into the user cache (network)")
    download.add_argument("model", help="catalog id, e.g. medsam-vit-base")
    download.set_defaults(handler=run_download)
    use = actions.add_parser("use", help="use weights from a local folder instead of downloading them")
    use.add_argument("model", help="catalog id")
    use.add_argument("folder", nargs="?", help="folder holding config.json and the weights")
    use.add_argument("--clear", action="store_true", help="forget the folder set for this model")
    use.set_defaults(handler=run_use)
    verify = actions.add_parser("verify", help="check a downloaded model's files against its manifest")
    verify.add_argument("model", help="catalog id")
    verify.add_argument("--full", action="store_true", help="recompute every SHA-256 (slow for large models)")
    verify.set_defaults(handler=run_verify)
    delete = actions.add_parser("delete", help="delete a downloaded model from the user cache")
    delete.add_argument("model", help="catalog id")
    delete.set_defaults(handler=run_delete)


def _store() -> Any:
    from DTTLib.models.cache import ModelStore  # noqa: PLC0415

    return ModelStore()


def model_locations(store: Any) -> list[dict[str, Any]]:
    """One row per catalog model: what it is and where its weights are on this computer."""
    from DTTLib.models.catalog import load_catalog  # noqa: PLC0415

    rows = []
    for entry in load_catalog().values():
        folder = store.local_folder(entry.id)
        if entry.kind == "bundled":
            where, path = f"bundled with {entry.source.split(':', 1)[1]}", ""
        elif folder is not None:
            where, path = "local folder" if folder.is_dir() else "local folder (missing!)", str(folder)
        elif store.is_cached(entry.id):
            problems = store.verify(entry.id)
            where = "downloaded" if not problems else f"downloaded, damaged ({problems[0]})"
            path = str(store.cache_path(entry.id))
        elif entry.kind == "folder":
            where, path = "not set (a folder you provide)", ""
        else:
            where, path = "not downloaded", ""
        rows.append({"id": entry.id, "phase": entry.phase, "source": entry.source,
                     "size_mb": round(entry.size_bytes / 1e6), "licence": entry.licence,
                     "gated": entry.gated, "where": where, "path": path})
    return rows


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    rows = model_locations(store)
    if args.json:
        print_json({"cache": str(store.root), "models": rows})
        return 0
    print(f"model cache: {store.root}")
    width = max(len(row["id"]) for row in rows)
    for row in rows:
        gated = ", gated" if row["gated"] else ""
        print(f"{row['id']:<{width}}  {row['phase']:<12}  {row['size_mb']:>6} MB  {row['licence']}{gated}  "
              f"— {row['where']}{': ' + row['path'] if row['path'] else ''}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from DTTLib.models.catalog import get_entry  # noqa: PLC0415

    store = _store()
    entry = get_entry(args.model)
    last = {"shown": -1}

    def progress(model_id: str, done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 0
        if percent != last["shown"]:
            last["shown"] = percent
            print(f"\r{model_id}: {percent:3d} % of {total / 1e6:.0f} MB", end="", file=sys.stderr, flush=True)

    resolved = store.resolve(entry.id, allow_download=True, progress=progress)
    if last["shown"] >= 0:
        print(file=sys.stderr)
    note = {"download": "downloaded to", "cache": "already downloaded in", "setting": "uses the local folder"}
    print(f"{entry.id}: {note.get(resolved.how, resolved.how)} {resolved.path}")
    return 0


def run_use(args: argparse.Namespace) -> int:
    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.models.catalog import get_entry  # noqa: PLC0415

    entry = get_entry(args.model)
    if args.clear == bool(args.folder):
        raise InputError("give either a folder or --clear", f"dtt models use {entry.id} FOLDER")
    _store().set_local_folder(entry.id, None if args.clear else args.folder)
    print(f"{entry.id}: " + ("local folder forgotten" if args.clear else f"uses {args.folder}"))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from DTTLib.errors import InputError  # noqa: PLC0415
    from DTTLib.models.catalog import get_entry  # noqa: PLC0415

    entry = get_entry(args.model)
    store = _store()
    if not store.is_cached(entry.id):
        raise InputError(f"'{entry.id}' is not downloaded in {store.root}", f"dtt models download {entry.id}")
    problems = store.verify(entry.id, full=args.full)
    if problems:
        print(f"{entry.id}: damaged — {'; '.join(problems)}. Fix: dtt models delete {entry.id}, "
              f"then dtt models download {entry.id}")
        return 1
    print(f"{entry.id}: all files present{' and their SHA-256 match' if args.full else ' with their sizes'}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from DTTLib.models.catalog import get_entry  # noqa: PLC0415

    entry = get_entry(args.model)
    freed = _store().delete(entry.id)
    print(f"{entry.id}: " + (f"deleted, {freed / 1e6:.1f} MB freed" if freed else "nothing downloaded to delete"))
    return 0
