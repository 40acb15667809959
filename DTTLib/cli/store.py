"""``dtt store``: inspect, check, search, export and import a store.

``verify`` exits 1 when it finds any integrity problem, so scripts and CI can rely on it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from DTTLib.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="the record store: stats, verify, similar, export, import",
                                   description="Inspect and maintain the DTT store (SQLite file or "
                                               "postgresql:// URL; default $DATABASE_URL, $DTT_STORE).")
    actions = parser.add_subparsers(dest="store_command", metavar="ACTION")
    actions.required = True

    def common(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--db", metavar="PATH_OR_URL", help="store file or postgresql:// URL")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=run)
        return sub

    common(actions.add_parser("stats", help="counts of every record type"))
    common(actions.add_parser("verify", help="integrity: database, audit chain, index vs table, masks"))
    similar = common(actions.add_parser("similar", help="lesions most like LESION_ID"))
    similar.add_argument("lesion_id")
    similar.add_argument("-k", type=int, default=5, help="how many (default 5)")
    similar.add_argument("--kind", default="appearance", choices=("appearance", "shape", "growth"))
    similar.add_argument("--patient", help="only this patient id")
    similar.add_argument("--organ", help="only lesions in this organ")
    similar.add_argument("--modality", help="only this modality (CT, MR, …)")
    export = common(actions.add_parser("export", help="write portable JSON + mask files to DIR"))
    export.add_argument("dir")
    imp = common(actions.add_parser("import", help="add the records of an export DIR"))
    imp.add_argument("dir")


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2, default=str) if args.json else text)


def run(args: argparse.Namespace) -> int:
    from DTTLib.store import open_store  # noqa: PLC0415 - keep `dtt --help` fast

    action = args.store_command
    if action in ("stats", "verify", "similar", "export") and args.db and "://" not in args.db:
        from pathlib import Path  # noqa: PLC0415
        if not Path(args.db).expanduser().exists():
            raise InputError(f"no store at {args.db}", "give the path of an existing store file")
    store = open_store(args.db, readonly=action in ("stats", "verify", "similar") and bool(args.db)
                       and "://" not in args.db)
    try:
        if action == "stats":
            stats = store.stats()
            lines = [f"{stats['backend']} store {stats['location']} (schema v{stats['schema_version']})"]
            lines += [f"  {table:17s} {n}" for table, n in stats["counts"].items()]
            lines += [f"  embeddings {e['kind']}/{e['dim']}: {e['count']}" for e in stats["embeddings"]]
            _print(args, stats, "\n".join(lines))
            return 0
        if action == "verify":
            problems = store.verify()
            _print(args, {"ok": not problems, "problems": problems},
                   "store OK" if not problems else "\n".join(["store has problems:", *problems]))
            return 1 if problems else 0
        if action == "similar":
            hits = store.similar(args.lesion_id, kind=args.kind, k=args.k, patient_id=args.patient,
                                 organ=args.organ, modality=args.modality)
            value = [{"lesion_id": h.lesion.id, "score": h.score, "label": h.lesion.label,
                      "patient_id": h.lesion.patient_id, "organ": h.lesion.organ} for h in hits]
            text = "\n".join(f"{h['score']:.4f}  {h['lesion_id']}  {h['label']}  {h['organ'] or ''}"
                             for h in value) or "no similar lesions"
            _print(args, value, text)
            return 0
        from DTTLib.store.exchange import export_store, import_store  # noqa: PLC0415
        counts = export_store(store, args.dir) if action == "export" else import_store(store, args.dir)
        _print(args, counts, f"{action}ed " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))
        return 0
    finally:
        store.close()
