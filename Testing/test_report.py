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
