"""Report charts and the self-contained HTML page."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from DTTLib.report.charts import Band, GrowthChart, growth_chart, sod_timeline, waterfall
from DTTLib.report.html import DISCLAIMER, Figure, Report, Section, Table, write_report


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def test_charts_are_png_files(tmp_path):
    days = np.array([0, 42, 84, 126])
    paths = [
        sod_timeline(days, [67.0, 64.4, None, 44.3], tmp_path / "sod.png"),
        waterfall(["L1", "L2", "N1"], [-33.0, 12.0, 25.0], tmp_path / "waterfall.png"),
        growth_chart(GrowthChart("L1", "mm", days, np.array([30.0, 27.6, 20.6, 22.5]), [
            Band("ensemble", np.linspace(0, 200, 50), np.linspace(30, 25, 50),
                 np.linspace(29, 20, 50), np.linspace(31, 30, 50), np.linspace(28, 15, 50), np.linspace(32, 35, 50)),
            Band("start 4 weeks later", np.linspace(0, 200, 50), np.linspace(30, 28, 50), hypothesis=True),
        ], therapy=[(28, 196)]), tmp_path / "growth.png"),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300


def test_html_embeds_every_figure_and_links_existing_files(tmp_path):
    figure = sod_timeline([0, 56], [50.0, 31.0], tmp_path / "png" / "sod.png")
    report = Report("Twin <PHANTOM>", "2 timepoints", [
        Section("Response", paragraphs=["Best overall response: PR"],
                tables=[Table("RECIST", ["day", "SOD mm"], [[0, 50.0], [56, 31.0]])],
                figures=[Figure(figure, "SOD <script>alert(1)</script>")],
                notes=["low-confidence measurement: L2 at t1"]),
    ])
    page = write_report(report, tmp_path / "report.html")
    text = page.read_text()
    assert "<script>" not in text  # captions are escaped
    collector = _Collector()
    collector.feed(text)
    assert len(collector.images) == 1
    embedded = base64.b64decode(collector.images[0].split(",", 1)[1])
    assert embedded == figure.read_bytes()
    for link in collector.links:
        assert (tmp_path / link).is_file(), link
    joined = " ".join(collector.text)
    assert DISCLAIMER in joined and "31.0" in joined and "Twin <PHANTOM>" in joined


def test_missing_figure_is_refused(tmp_path):
    report = Report("t", "s", [Section("x", figures=[Figure(tmp_path / "nope.png", "missing")])])
    with pytest.raises(FileNotFoundError):
        write_report(report, tmp_path / "r.html")


def test_sod_chart_pd_threshold_steps_with_the_nadir_of_earlier_visits(tmp_path, monkeypatch):
    """The PD line a reader compares each visit with is ≥ 1.2 × and ≥ 5 mm over the smallest SOD of
    the visits before it (baseline included) — here day 84 is PD against 30 mm although the smallest
    SOD of all (20 mm, day 126) comes later. A not-evaluable visit (None) changes no nadir."""
    from DTTLib.report import charts

    figs = []
    real_save = charts._save
    monkeypatch.setattr(charts, "_save", lambda fig, path: (figs.append(fig), real_save(fig, path))[1])
    days = [0.0, 42, 63, 84, 126, 168]
    sod = [50.0, 30.0, None, 40.0, 20.0, 26.0]
    sod_timeline(days, sod, tmp_path / "sod.png")
    (ax,) = figs[0].axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    pd_line = next(ln for label, ln in lines.items() if "PD" in label)
    x, y = (np.asarray(v, float) for v in pd_line.get_data())
    measured = [(d, v) for d, v in zip(days, sod) if v is not None]
    for i in range(1, len(measured)):
        nadir = min(v for _, v in measured[:i])
        want = max(1.2 * nadir, nadir + 5.0)
        # the step that ends at this visit comes from the previous measured visit at this height
        j = np.flatnonzero((x[1:] == measured[i][0]) & (x[:-1] == measured[i - 1][0]))
        assert j.size == 1 and y[j[0]] == pytest.approx(want) and y[j[0] + 1] == pytest.approx(want)
    assert y[np.flatnonzero(x == 84.0)[0]] == pytest.approx(36.0)
    pr_line = next(ln for label, ln in lines.items() if "PR" in label)
    assert np.asarray(pr_line.get_ydata(), float) == pytest.approx([0.7 * 50.0] * 2)
