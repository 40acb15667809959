"""Portable export/import: one JSON file plus the mask files, between any two stores.

Ids are random, so importing into a non-empty store cannot collide; rows whose id is
already present are skipped, which makes a repeated import harmless. The source's audit log
travels as ``audit.json`` and must verify before anything is imported; the import itself is
one transaction with one audit entry in the target's own chain. The de-identification key
never travels.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from DTTLib.errors import InputError, ResourceError
from DTTLib.store import audit, migrations
from DTTLib.store.base import SqlStore, sha256_file
from DTTLib.store.records import BY_TABLE, RECORD_TYPES, AuditEntry, Embedding, MaskFile

FORMAT = "dtt-store-export-1"
ORDER = [cls.TABLE for cls in RECORD_TYPES]


def export_store(store: SqlStore, folder: str | Path, *, actor: str = "dtt") -> dict[str, int]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "store.json").exists():
        raise InputError(f"{folder} already holds an export", "choose an empty folder")
    tables: dict[str, list[dict[str, Any]]] = {}
    for cls in RECORD_TYPES:
        tables[cls.TABLE] = store._read(f"SELECT * FROM {cls.TABLE} ORDER BY created_at, id")  # noqa: SLF001
    base = store._mask_base()  # noqa: SLF001
    for row in tables[MaskFile.TABLE]:
        source = Path(row["path"])
        source = source if source.is_absolute() or base is None else base / source
        target = Path("masks") / f"{row['id']}{''.join(source.suffixes)}"
        try:
            (folder / "masks").mkdir(exist_ok=True)
            shutil.copyfile(source, folder / target)
        except OSError as error:
            raise ResourceError(f"cannot copy mask {source}: {error.strerror}",
                                "restore the file or free disk space") from error
        row["path"] = target.as_posix()
    embeddings = []
    for row in store._read("SELECT * FROM embeddings ORDER BY seq"):  # noqa: SLF001
        vector = store._vector_value(row["vector"], row["dim"])  # noqa: SLF001
        embeddings.append({k: row[k] for k in ("id", "lesion_id", "timepoint_id", "kind", "model", "created_at")}
                          | {"vector": base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()})
    document = {"format": FORMAT, "schema_version": store.schema_version(), "tables": tables,
                "embeddings": embeddings}
    _write_json(folder / "store.json", document)
    _write_json(folder / "audit.json", [asdict(e) for e in store.audit_entries()])
    counts = {t: len(rows) for t, rows in tables.items()} | {"embeddings": len(embeddings)}
    store.log("export", "store", {"folder": str(folder), "counts": counts}, document, actor=actor)
    return counts


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as handle:
            json.dump(value, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ResourceError(f"cannot write {path}: {error.strerror}", "free disk space or choose another folder") from error


def _checked_tables(folder: Path, tables: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The export's rows, each checked like a new record (columns known, values valid).

    Column names become SQL identifiers, so only a record's own fields are accepted. Rows of
    an older schema (e.g. growth fits without ``patient_id``, schema 1) are valid as they are."""
    checked: dict[str, list[dict[str, Any]]] = {}
    for table, table_rows in tables.items():
        cls = BY_TABLE.get(table)
        if cls is None:
            raise InputError(f"{folder}: the export has an unknown table {table!r}", "export it again")
        names = {f.name for f in fields(cls)}
        for row in table_rows:
            unknown = set(row) - names
            if unknown:
                raise InputError(f"{folder}: {table} row {row.get('id')!r} has unknown column {sorted(unknown)[0]!r}",
                                 "export it again with this DTT version's `dtt store export`")
            try:
                cls.from_row(dict(row)).validate()
            except (TypeError, ValueError) as error:
                raise InputError(f"{folder}: {table} row {row.get('id')!r} is damaged ({error})",
                                 "export it again") from error
        checked[table] = list(table_rows)
    return checked


def import_store(store: SqlStore, folder: str | Path, *, actor: str = "dtt",
                 mask_folder: str | Path | None = None) -> dict[str, int]:
    """Add an export's records to ``store``; mask files are copied next to it (or ``mask_folder``)."""
    folder = Path(folder)
    try:
        document = json.loads((folder / "store.json").read_text())
        entries = [AuditEntry(**e) for e in json.loads((folder / "audit.json").read_text())]
    except FileNotFoundError as error:
        raise InputError(f"{folder} is not a DTT store export (no {Path(error.filename).name})",
                         "give the folder `dtt store export` wrote") from error
    except (ValueError, TypeError) as error:
        raise InputError(f"{folder}: the export is damaged ({error})", "export it again") from error
    if document.get("format") != FORMAT:
        raise InputError(f"{folder}: unknown export format {document.get('format')!r}", "export it again")
    if int(document.get("schema_version") or 0) > migrations.latest_version():
        raise InputError(f"{folder} was exported from a store at schema version {document['schema_version']}, "
                         f"newer than this DTT knows ({migrations.latest_version()})",
                         "update DigitalTwinTumor before importing it")
    rows = _checked_tables(folder, document.get("tables") or {})
    problems = audit.verify_chain(entries, audit.format_head(entries[-1].seq, entries[-1].hash)
                                  if entries else audit.format_head(0, audit.GENESIS))
    if problems:
        raise InputError(f"{folder}: the exported audit log does not verify ({problems[0]})",
                         "export it again from the source store")
    base = store._mask_base()  # noqa: SLF001 - server stores have none: masks stay in the export
    masks_to = Path(mask_folder) if mask_folder else (base / "masks" if base else folder / "masks")
    for row in rows.get(MaskFile.TABLE, []):
        source = folder / row["path"]
        if not source.exists() or sha256_file(source) != row["sha256"]:
            raise InputError(f"{folder}: mask file {row['path']} is missing or altered", "export it again")
        masks_to.mkdir(parents=True, exist_ok=True)
        target = masks_to / source.name
        if target.resolve() != source.resolve():
            shutil.copyfile(source, target)
        row["path"] = str(target.resolve())
    counts: dict[str, int] = {}
    with store._tx() as cur:  # noqa: SLF001 - one transaction for the whole import
        for table in ORDER:
            existing = {r["id"] for r in store._read(f"SELECT id FROM {table}")}  # noqa: SLF001
            new = [r for r in rows.get(table, []) if r["id"] not in existing]
            for row in new:
                store._insert(cur, table, row)  # noqa: SLF001
            counts[table] = len(new)
        existing = {r["id"] for r in store._read("SELECT id FROM embeddings")}  # noqa: SLF001
        new_embeddings = []
        for item in document["embeddings"]:
            if item["id"] in existing:
                continue
            vector = np.frombuffer(base64.b64decode(item["vector"]), "<f4").astype(np.float32)
            embedding = Embedding(**{k: v for k, v in item.items() if k != "vector"}, vector=vector)
            embedding.validate()
            new_embeddings.append(embedding)
        if new_embeddings:
            cur.executemany(
                store._sql("INSERT INTO embeddings (id, lesion_id, timepoint_id, kind, model, dim, vector, "  # noqa: SLF001
                           "created_at) VALUES (?, ?, ?, ?, ?, ?, " + store._vector_marker() + ", ?)"),  # noqa: SLF001
                [(e.id, e.lesion_id, e.timepoint_id, e.kind, e.model, e.dim,
                  store._vector_param(e.vector), e.created_at) for e in new_embeddings])  # noqa: SLF001
        counts["embeddings"] = len(new_embeddings)
        store._append_audit(cur, actor, "import", "store", {"folder": str(folder), "counts": counts,  # noqa: SLF001
                                                             "source_audit_head": entries[-1].hash if entries else None},
                            document)
    store._after_embeddings_written()  # noqa: SLF001
    return counts
