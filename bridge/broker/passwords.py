"""Password hashes for the embedded broker's users, in Mosquitto's ``$7$`` format.

``$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512 over a 12-byte salt, giving 64 bytes; salt
and hash in base64. It is what ``mosquitto_passwd`` (Mosquitto 2.0) writes, so the lines of a
Mosquitto password file work in ``broker.users`` and ``mqttbridge passwd`` output works in
Mosquitto: moving devices between the two brokers keeps their passwords.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

__all__ = ["DEFAULT_ITERATIONS", "PasswordHash", "hash_password"]

# Mosquitto 2.0 uses 101, for brokers where thousands of devices reconnect at once. Each CONNECT
# with a password costs one hash: 10,000 takes about 10 ms of CPU (off the event loop), so a
# thousand devices reconnecting after a restart cost about 10 s, while a leaked hash costs an
# attacker 100 times what Mosquitto's would. Device passwords should be random anyway
# (`mqttbridge passwd` makes one), which no iteration count can make guessable.
DEFAULT_ITERATIONS = 10_000
_SALT_BYTES = 12
_HASH_BYTES = 64
_MAKE_ONE = "make one with `mqttbridge passwd <username>`"


@dataclass(frozen=True)
class PasswordHash:
    """A parsed ``$7$`` hash; ``verify()`` says whether a password matches it."""

    iterations: int
    salt: bytes
    digest: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Parse ``$7$...``; ``ValueError`` says why not, without repeating ``text``.

        The text is not quoted back because a plaintext password put where the hash belongs
        would otherwise end up in an error message, a terminal or a log.
        """
        if not text:
            raise ValueError(f"expected a password hash ($7$...); {_MAKE_ONE}")
        parts = text.split("$")
        if len(parts) < 2 or parts[0] or not parts[1]:
            raise ValueError(f"expected a password hash ($7$...), not a password; {_MAKE_ONE}")
        kind = parts[1]
        if kind == "6":
            raise ValueError(
                "Mosquitto 1.x hashes ($6$, one round of SHA-512) are too weak to accept; "
                + _MAKE_ONE
            )
        if kind != "7":
            raise ValueError(f"unsupported hash type ${kind}$ (only $7$ is known); {_MAKE_ONE}")
        try:
            _, _, iterations, salt, digest = parts
            parsed = cls(
                int(iterations), base64.b64decode(salt, validate=True), base64.b64decode(digest)
            )
        except (ValueError, binascii.Error):
            raise ValueError(f"malformed $7$ password hash; {_MAKE_ONE}") from None
        if parsed.iterations < 1 or not parsed.salt or len(parsed.digest) != _HASH_BYTES:
            raise ValueError(f"malformed $7$ password hash; {_MAKE_ONE}")
        return parsed

    def verify(self, password: bytes) -> bool:
        """Whether ``password`` matches, compared in constant time. Costs ``iterations``."""
        given = hashlib.pbkdf2_hmac("sha512", password, self.salt, self.iterations, _HASH_BYTES)
        return hmac.compare_digest(given, self.digest)

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"$7${self.iterations}${salt}${digest}"


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The ``$7$`` hash of ``password`` with a new random salt."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations}")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return str(PasswordHash(iterations, salt, digest))
