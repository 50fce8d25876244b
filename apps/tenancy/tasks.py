from celery import shared_task

from .moves import recover_stale_moves


@shared_task(name="tenancy.recover_moves")
def recover_moves() -> dict:
    """Periodic: roll back (before the switch) or finish (after it) moves whose mover died."""
    return recover_stale_moves()
