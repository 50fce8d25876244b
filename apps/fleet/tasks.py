from celery import shared_task

from .moves import move_run, recover_stale_moves


@shared_task(name="tenancy.recover_moves")
def recover_moves() -> dict:
    """Periodic: roll back (before the switch) or finish (after it) moves whose mover died,
    and drop replication objects (slots, publications, subscriptions) of moves that are over."""
    return recover_stale_moves()


# At most one delivery at a time matters, not once: the move lock makes a
# second runner give way, and a redelivery after a worker died resumes the move.
@shared_task(name="tenancy.run_move", acks_late=True)
def run_move(move_id: int) -> str:
    """Run a move recorded by ``services.move_start`` (which sends it to the maintenance queue)."""
    report = move_run(move_id=move_id)
    return "already finished" if report is None else report.outcome
