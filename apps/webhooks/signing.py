"""Endpoint secrets and Standard Webhooks signatures.

A secret is ``whsec_`` + base64 of 32 bytes, as the Standard Webhooks
libraries read it. It is not stored: it is an HMAC of a random seed under
SECRET_KEY (the same way invitation tokens are made, docs/security.md), and
only its sha256 is kept to tell which key derives it, so the delivery worker
derives it when it signs and whoever reads the table holds nothing that
signs. After a SECRET_KEY rotation the old key in SECRET_KEY_FALLBACKS still
derives the secrets made before it.

Signature: ``v1,`` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")),
one per valid secret, separated by spaces (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac

SECRET_MARK = "whsec_"
SALT = "webhooks.endpoint-secret"


class SecretUnavailable(Exception):
    """No current or fallback key derives the stored secret."""


def new_seed() -> str:
    return secrets.token_urlsafe(32)


def secret_from_seed(seed: str, *, key=None) -> str:
    digest = salted_hmac(SALT, seed, secret=key, algorithm="sha256").digest()
    return SECRET_MARK + base64.b64encode(digest).decode()


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """(secret, seed, hash) of a fresh secret; the secret is shown once."""
    seed = new_seed()
    secret = secret_from_seed(seed)
    return secret, seed, secret_hash(secret)


def derive(seed: str, expected_hash: str) -> str:
    """The secret made from ``seed`` with the current key or a fallback."""
    for key in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        secret = secret_from_seed(seed, key=key)
        if hmac.compare_digest(secret_hash(secret), expected_hash):
            return secret
    raise SecretUnavailable("the endpoint's secret cannot be derived with the current keys; rotate it")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_MARK))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``, signed with every secret given."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
    }
