"""``dtt store stats|verify|similar|export|import`` end to end, embedded and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from DTTLib.cli.main import main
from DTTLib.store import Embedding, Lesion, MaskFile, open_store, sha256_file
from store_fixtures import clustered, pg_server, pg_url, populate  # noqa: F401


def _fill(location: str, tmp_path) -> list[Lesion]:
    mask = tmp_path / "L0.seg.nrrd"
    mask.write_bytes(b"mask")
    with open_store(location) as s:
        _, point, lesions = populate(s, lesions=12)
        s.add_embeddings([Embedding(lesion_id=l.id, vector=v) for l, v in zip(lesions, clustered(12, 16))])
        s.add(MaskFile(lesion_id=lesions[0].id, timepoint_id=point.id, path=str(mask), sha256=sha256_file(mask)))
    return lesions


def test_stats_similar_verify_export_import_round_trip(tmp_path, capsys, pg_url):
    db = str(tmp_path / "a.sqlite")
    lesions = _fill(db, tmp_path)
    assert main(["store", "stats", "--db", db, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["counts"]["lesions"] == 12 and stats["counts"]["masks"] == 1
    assert main(["store", "similar", lesions[0].id, "-k", "3", "--db", db, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and lesions[0].id not in {h["lesion_id"] for h in hits}
    assert main(["store", "verify", "--db", db]) == 0
    assert "store OK" in capsys.readouterr().out
    assert main(["store", "export", str(tmp_path / "exp"), "--db", db]) == 0
    assert "exported 1 patients" in capsys.readouterr().out
    for target in (str(tmp_path / "b.sqlite"), pg_url):  # into a fresh embedded and a server store
        assert main(["store", "import", str(tmp_path / "exp"), "--db", target, "--json"]) == 0
        counts = json.loads(capsys.readouterr().out)
        assert counts["lesions"] == 12 and counts["embeddings"] == 12 and counts["masks"] == 1
        assert main(["store", "import", str(tmp_path / "exp"), "--db", target, "--json"]) == 0  # idempotent
        assert json.loads(capsys.readouterr().out)["lesions"] == 0
        assert main(["store", "similar", lesions[0].id, "-k", "3", "--db", target, "--json"]) == 0
        assert [h["lesion_id"] for h in json.loads(capsys.readouterr().out)] == [h["lesion_id"] for h in hits]
        assert main(["store", "verify", "--db", target]) == 0
        capsys.readouterr()


def test_verify_exits_non_zero_on_tampering_and_bad_input_is_one_line(tmp_path, capsys):
    db = tmp_path / "a.sqlite"
    _fill(str(db), tmp_path)
    raw = sqlite3.connect(db)
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET parameters = '{}' WHERE seq = 1")
    raw.commit()
    raw.close()
    assert main(["store", "verify", "--db", str(db), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and any("entry 1 was altered" in p for p in report["problems"])
    assert main(["store", "stats", "--db", str(tmp_path / "missing.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no store at" in err
    assert main(["store", "similar", "nope", "--db", str(db)]) == 2
    assert "no lesion with id 'nope'" in capsys.readouterr().err
