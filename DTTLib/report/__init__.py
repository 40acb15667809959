"""The visual report of a twin: charts (PNG) and one self-contained HTML page."""
