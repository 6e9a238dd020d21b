"""Real certificates for the tests, made by `openssl` (P-256, self-signed)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(folder: Path, name: str, *, days: int, ip: str | None = None) -> tuple[Path, Path]:
    """``cert.pem`` and ``key.pem`` in ``folder``, for ``name`` (and the address ``ip``, which a
    TLS client checks against the certificate's subjectAltName)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    extra = ["-addext", f"subjectAltName=IP:{ip}"] if ip is not None else []
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", str(days), "-subj", f"/CN={name}", *extra,
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key
