"""Reads of Move rows: where a move stands, for the operator console and the commands."""

from __future__ import annotations

from django.utils import timezone

from apps.tenancy.models import Move

# How far along a move is when it enters a phase (percent), for the phases
# whose own progress is not measured in bytes: the copy is 5-85 %.
_PHASE_FLOOR = {"prepare": 0.0, "copy": 5.0, "catch_up": 85.0, "freeze": 92.0, "verify": 95.0, "flip": 98.0,
                "retire": 99.0, "done": 100.0, "rolled_back": 100.0}


def move_progress(move) -> dict:
    """Where a move stands, for the operator console and the move command.

    Keys: phase, path ("logical" | "locked" | "" before prepare chose one),
    rows_copied, rows_total (estimate from the source's statistics),
    bytes_copied, bytes_total (estimate), percent (0-100), eta_seconds (None
    when unknown or finished), freeze_seconds, error, finished, started_at,
    heartbeat_at. Reads the Move row only; poll it (``move.refresh_from_db()``
    or a fresh ``Move`` each time).
    """
    finished = move.finished_at is not None
    rows_total = max(move.rows_total, move.rows_copied)
    bytes_total = max(move.bytes_total, move.bytes_copied)
    fraction = (move.bytes_copied / bytes_total) if bytes_total else (move.rows_copied / rows_total if rows_total else 0)
    floor = _PHASE_FLOOR.get(move.phase, 0.0)
    if move.phase == "copy":
        percent = floor + 80.0 * min(1.0, fraction)
    else:
        percent = floor
    eta = None
    if not finished and move.phase == "copy" and 0.02 <= fraction < 1:  # below that, no rate worth the name
        elapsed = (timezone.now() - move.started_at).total_seconds()
        eta = round(elapsed * (1 - fraction) / fraction, 1)
    elif not finished and move.phase in ("catch_up", "freeze", "verify", "flip", "retire"):
        eta = 0.0 if move.phase != "catch_up" else None
    return {
        "phase": move.phase,
        "path": move.path,
        "rows_copied": move.rows_copied,
        "rows_total": rows_total,
        "bytes_copied": move.bytes_copied,
        "bytes_total": bytes_total,
        "percent": round(100.0 if finished else min(percent, 99.9), 1),
        "eta_seconds": eta,
        "freeze_seconds": move.freeze_seconds,
        "error": move.error,
        "finished": finished,
        "started_at": move.started_at,
        "heartbeat_at": move.heartbeat_at,
    }


def move_progress_line(move) -> str:
    """One line of ``move_progress`` for a terminal."""
    p = move_progress(move)
    eta = "" if p["eta_seconds"] is None else f", ETA {p['eta_seconds']:.0f}s"
    lag = f", {move.lag_bytes / 1e6:.1f} MB behind" if move.lag_bytes and p["phase"] == "catch_up" else ""
    return (f"[{p['phase']}] {p['percent']:.0f}%: {p['rows_copied']}/{p['rows_total']} rows, "
            f"{p['bytes_copied'] / 1e6:.1f}/{p['bytes_total'] / 1e6:.1f} MB{lag}{eta}")


def moves_in_progress() -> list:
    """Unfinished moves, oldest first, with tenant, source and target loaded."""
    return list(Move.objects.filter(finished_at__isnull=True).select_related("tenant", "source", "target")
                .order_by("started_at"))
