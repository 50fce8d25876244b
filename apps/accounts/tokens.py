"""Credentials for the API: API keys (stored hashed) and short-lived user tokens.

API key:    sk_<prefix>_<secret>  (prefix is public and indexed; sha256 of the whole key is stored)
User token: ut_<signed>           (signed user id + tenant id + time; no table, expires)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core import signing

API_KEY_MARK = "sk_"
USER_TOKEN_MARK = "ut_"
USER_TOKEN_SALT = "accounts.user-token"


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


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
