"""OpenSSH public key lines: their parts, their blob, their fingerprint.

A key line is ``TYPE BASE64 [COMMENT]``. The blob is SSH wire format and begins with the key
type again; a line whose blob does not decode, or names another type, is not a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)  # fmt: skip


class NotAKeyError(ValueError):
    """Not a public key line; the message says why, never the key."""


def key_blob(line: str) -> bytes:
    """The decoded blob of a key line, checked to name the same type as the line does."""
    parts = line.split(" ")
    if len(parts) not in (2, 3) or parts[0] not in KEY_TYPES:
        raise NotAKeyError("not TYPE BASE64 [COMMENT] with a known key type")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise NotAKeyError("its base64 part does not decode") from None
    if len(blob) < 4:
        raise NotAKeyError("its blob is too short")
    (size,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + size].decode("ascii", "replace") != parts[0] or len(blob) <= 4 + size:
        raise NotAKeyError(f"its blob is not an {parts[0]} key")
    return blob


def fingerprint(line: str) -> str:
    """OpenSSH's SHA256 fingerprint; ``SHA256:?`` for a line that is not a key."""
    try:
        blob = key_blob(line)
    except NotAKeyError:
        return "SHA256:?"
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
