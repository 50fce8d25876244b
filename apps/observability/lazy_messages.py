"""Django's message middleware, with the storage made on first use.

Django builds the message storage for every request (a cookie signer and a
session storage, about 7% of a trivial request's time in process), although
only the admin pages read or add messages. Here the storage is made the first
time a view or template touches it; a request that never does is answered
exactly as before: an untouched storage writes nothing back (neither the
session nor the messages cookie changes).
"""

from __future__ import annotations

from django.contrib.messages import middleware
from django.contrib.messages.storage import default_storage
from django.utils.functional import SimpleLazyObject, empty


class MessageMiddleware(middleware.MessageMiddleware):
    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never used: nothing to store
        return super().process_response(request, response)
