"""Pulsar tokens: HS256 JWTs as Pulsar's ``tokens create --secret-key`` makes them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pulsar_token(secret_key: bytes, subject: str) -> str:
    """A token for role ``subject`` signed with ``secret_key`` (no expiry)."""
    header = _b64url(json.dumps({"alg": "HS256"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps({"sub": subject}, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    mac = hmac.new(secret_key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(mac)}"
