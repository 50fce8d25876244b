"""Streaming export writers: memory stays flat however many rows there are.

Rows come from a server-side cursor (``QuerySet.iterator``) and go straight
to a temporary file; CSV is written line by line, XLSX by xlsxwriter in
``constant_memory`` mode (each row is flushed to disk once the next starts).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import tempfile
from collections.abc import Callable, Iterable

import xlsxwriter

DOCUMENT_COLUMNS = ["id", "title", "status", "tags", "author_id", "version", "created_at", "updated_at"]
EVENT_COLUMNS = ["id", "occurred_at", "event_type", "properties"]


# A spreadsheet runs a cell whose text starts with one of these (a formula,
# or DDE on older software), so a member could plant `=HYPERLINK(...)` in a
# title and have it run on an owner's machine. Such cells are written with a
# leading apostrophe, which spreadsheets show as plain text (the OWASP advice
# for CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _cell(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str):
        return neutralise(value)
    return value


def write_export(rows: Iterable[tuple], columns: list[str], fmt: str, progress: Callable[[int], None],
                 every: int = 10_000):
    """Write ``rows`` to a temporary file; returns (file, row count)."""
    handle = tempfile.NamedTemporaryFile(suffix=f".{fmt}", delete=False)
    count = 0
    if fmt == "csv":
        with open(handle.name, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(v) for v in row])
                count += 1
                if count % every == 0:
                    progress(count)
    else:
        # Data is never a formula, a link or a number in disguise: strings
        # stay strings whatever they look like.
        workbook = xlsxwriter.Workbook(handle.name, {
            "constant_memory": True, "remove_timezone": True,
            "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
        })
        sheet = workbook.add_worksheet("export")
        sheet.write_row(0, 0, columns)
        for row in rows:
            count += 1
            sheet.write_row(count, 0, [_cell(v) for v in row])
            if count % every == 0:
                progress(count)
        workbook.close()
    progress(count)
    return handle.name, count
