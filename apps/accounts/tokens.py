"""Credentials for the API: API keys (stored hashed) and short-lived user tokens.

API key:    sk_<prefix>_<secret>  (prefix is public and indexed; sha256 of the whole key is stored)
User token: ut_<signed>           (signed user id + tenant id + time; no table, expires)
Invitation: HMAC of a stored seed  (sha256 stored; derived again by the email task)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.core import signing
from django.utils.crypto import salted_hmac

API_KEY_MARK = "sk_"
USER_TOKEN_MARK = "ut_"
USER_TOKEN_SALT = "accounts.user-token"


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- invitation tokens ---------------------------------------------------------
#
# Re-derivable rather than sealed: the token is an HMAC (under SECRET_KEY) of
# a random seed stored with the invitation, and only its sha256 is stored
# for lookup. The email task is given the invitation's id and derives the
# token when it sends, so no outbox row, broker message or dead letter holds
# it, and a replay sends the same link again. Whoever reads the table sees
# a seed and a hash, neither of which opens anything without the key. When
# the key rotates, the old one in SECRET_KEY_FALLBACKS still derives the
# token of an invitation made before (``invitation_token_for``).

INVITATION_SALT = "accounts.invitation-token"


def new_invitation_seed() -> str:
    return secrets.token_urlsafe(32)


def invitation_token(seed: str, *, secret=None) -> str:
    digest = salted_hmac(INVITATION_SALT, seed, secret=secret, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def invitation_token_for(*, seed: str, token_hash: str) -> str | None:
    """The token of the invitation with this seed and hash, derived with the
    current key or a fallback; None when no key derives it."""
    if not seed:
        return None
    for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        token = invitation_token(seed, secret=secret)
        if hmac.compare_digest(hash_secret(token), token_hash):
            return token
    return None


def new_api_key() -> tuple[str, str, str]:
    """(full key, prefix, hash)."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_MARK}{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_secret(key)


def parse_api_key(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not key.startswith(API_KEY_MARK):
        return None
    prefix, _, secret = key[len(API_KEY_MARK):].partition("_")
    return prefix if len(prefix) == 12 and secret else None


def api_key_matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(key), key_hash)


def issue_user_token(*, user_id: int, tenant_id: int) -> str:
    return USER_TOKEN_MARK + signing.dumps({"u": user_id, "t": tenant_id}, salt=USER_TOKEN_SALT, compress=True)


def read_user_token(token: str) -> dict | None:
    """{"u": user id, "t": tenant id} of a valid, unexpired token, else None."""
    if not token.startswith(USER_TOKEN_MARK):
        return None
    try:
        return signing.loads(token[len(USER_TOKEN_MARK):], salt=USER_TOKEN_SALT, max_age=settings.USER_TOKEN_SECONDS)
    except signing.BadSignature:
        return None
