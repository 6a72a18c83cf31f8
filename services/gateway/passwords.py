"""Password policy and storage: only a salted scrypt hash ever leaves the gateway.

scrypt is in the standard library (OpenSSL's, well kept) and is memory-hard, so a
stolen journal does not make guessing cheap. Hashing runs on a worker thread (OpenSSL
releases the GIL), never on the gateway's event loop and never in the matcher.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SPECIALS = frozenset(".!_@$")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_PASSWORD = 128


def policy_ok(password: str) -> bool:
    """The seed's rule: 8+ characters with upper, lower, digit and one of . ! _ @ $."""
    return (
        8 <= len(password) <= MAX_PASSWORD
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
        and any(c.isdigit() for c in password)
        and any(c in SPECIALS for c in password)
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


# Checked against when the account does not exist, so timing does not reveal that.
DUMMY_HASH = hash_password("Dummy.password1")


def verify(password: str, stored: str) -> bool:
    """Constant-time comparison of the recomputed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def change(old: str, stored: str, new: str) -> str:
    """The hash of ``new`` if ``old`` matches ``stored``, else "" (both slow, off-loop)."""
    return hash_password(new) if verify(old, stored) else ""
