"""One self-contained HTML page: pictures embedded as data URIs, also kept as PNG files.

Every number printed comes from the twin record handed in; projections are labelled as
hypotheses with their uncertainty, and the page states that it is not medical advice.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DISCLAIMER = ("Research software, not a medical device. Measurements are computed from the images shown; "
              "growth projections and what-if scenarios are hypotheses with the uncertainty shown, "
              "not predictions for this patient and not treatment advice.")


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # flags, warnings: shown highlighted


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


def write_report(report: Report, path: Path) -> Path:
    """Write the page; raises if a figure file is missing (a report must not lie)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(report.title)}</h1><p class='sub'>{_e(report.subtitle)}</p>",
             f"<p class='disclaimer'>{_e(DISCLAIMER)}</p>"]
    for section in report.sections:
        parts.append(f"<section><h2>{_e(section.title)}</h2>")
        parts += [f"<p>{_e(p)}</p>" for p in section.paragraphs]
        parts += [f"<p class='flag'>{_e(n)}</p>" for n in section.notes]
        for table in section.tables:
            parts.append(_table(table))
        if section.figures:
            parts.append("<div class='figs'>")
            for figure in section.figures:
                parts.append(f"<figure><img alt='{_e(figure.caption)}' src='{_data_uri(figure.path)}'>"
                             f"<figcaption>{_e(figure.caption)} <a href='{_e(_relative(figure.path, path))}'>PNG</a>"
                             "</figcaption></figure>")
            parts.append("</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _table(table: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    return f"<h3>{_e(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _data_uri(path: Path) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"report figure {path} does not exist")
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _relative(figure: Path, page: Path) -> str:
    try:
        return Path(figure).resolve().relative_to(page.parent.resolve()).as_posix()
    except ValueError:
        return Path(figure).name


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font-family:system-ui,Segoe UI,Arial,sans-serif;max-width:1100px;margin:24px auto;color:#222;padding:0 12px}
h1{margin-bottom:0}.sub{color:#666;margin-top:4px}
.disclaimer{background:#fff6d6;border:1px solid #e6c200;padding:8px 12px;border-radius:6px}
.flag{background:#fde8e8;border-left:4px solid #d55e00;padding:6px 10px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f1f4f8}
td:first-child,th:first-child{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;max-width:520px}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:13px;color:#555}
section{margin-top:28px}
"""
