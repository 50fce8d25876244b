"""How a task failure should be treated."""


class RetryLater(Exception):
    """A temporary condition (a provider down, a breaker open): retry with backoff."""


class PermanentError(Exception):
    """Retrying cannot help (bad input, a missing object): straight to the dead letters."""
