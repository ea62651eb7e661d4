"""RocketMQ ACL on the remoting protocol: every request signed as the Java client's
``AclClientRPCHook`` signs it.

The signature is ``base64(HmacSHA1(secret_key, content))`` where ``content`` is the values of
the request's ext fields *including* ``AccessKey``, in the order of their keys (a Java
``TreeMap``: code-point order), concatenated as UTF-8, followed by the body. The request then
carries ``AccessKey`` and ``Signature`` among its ext fields; the broker (ACL 1.0 and 2.0 alike)
recomputes the same content without ``Signature`` and compares.

Signing happens where frames are written (:class:`SigningConnection`), so every request of
:class:`~bench.protocol.remoting.RemotingClient`, its pre-encoded fast-path sends included,
is signed without the protocol module knowing about ACL. The keys come from environment
variables named by the endpoints; they are held in memory only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Mapping

from bench.drivers.base import secret_from_env
from bench.errors import ConfigError
from bench.infra.topology import Endpoints
from bench.protocol.remoting import RemotingClient, RemotingConnection

ACCESS_KEY = "AccessKey"
SIGNATURE = "Signature"
_PREFIX = struct.Struct(">II")


def signature(ext_fields: Mapping[str, str], body: bytes, secret_key: str) -> str:
    """The ``Signature`` of a request with ``ext_fields`` (``AccessKey`` included) and ``body``."""
    content = "".join(v for k, v in sorted(ext_fields.items()) if k != SIGNATURE).encode()
    mac = hmac.new(secret_key.encode(), content + body, hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def sign_frame(frame: bytes | memoryview, access_key: str, secret_key: str) -> bytes:
    """One complete frame (length prefix included, JSON header) with its request signed."""
    total, word = _PREFIX.unpack_from(frame, 0)
    if word >> 24 != 0:
        raise ConfigError("RocketMQ ACL signing needs JSON-serialized remoting headers")
    header_len = word & 0xFFFFFF
    header = json.loads(bytes(frame[8 : 8 + header_len]))
    body = bytes(frame[8 + header_len : 4 + total])
    ext = {str(k): str(v) for k, v in (header.get("extFields") or {}).items()}
    ext[ACCESS_KEY] = access_key
    ext[SIGNATURE] = signature(ext, body, secret_key)
    header["extFields"] = ext
    raw = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(4 + len(raw) + len(body), len(raw)) + raw + body


def sign_frames(data: bytes | bytearray | memoryview, access_key: str, secret_key: str) -> bytes:
    """Every frame in ``data`` (one write may carry several) signed."""
    view = memoryview(bytes(data))
    out: list[bytes] = []
    pos = 0
    while pos < len(view):
        (total,) = struct.unpack_from(">I", view, pos)
        out.append(sign_frame(view[pos : pos + 4 + total], access_key, secret_key))
        pos += 4 + total
    return b"".join(out)


class SigningConnection(RemotingConnection):
    """A remoting connection that signs every request it writes."""

    def __init__(self, addr: str, *, keys: tuple[str, str], **kw: float) -> None:
        self._keys = keys
        super().__init__(addr, **kw)  # type: ignore[arg-type]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(sign_frames(data, *self._keys))


class SigningRemotingClient(RemotingClient):
    """:class:`RemotingClient` whose connections sign every request (RocketMQ ACL)."""

    def __init__(self, namesrv_addrs: str, *, keys: tuple[str, str], **kw: object) -> None:
        super().__init__(namesrv_addrs, **kw)  # type: ignore[arg-type]
        self._keys = keys

    def connection(self, addr: str) -> RemotingConnection:
        conn = self._conns.get(addr)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            from bench.errors import DriverError

            raise DriverError("RemotingClient is closed")
        with self._conn_lock:
            conn = self._conns.get(addr)
            if conn is None or conn.closed:
                conn = SigningConnection(
                    addr,
                    keys=self._keys,
                    connect_timeout=self.connect_timeout,
                    io_timeout=max(self.timeout, self.admin_timeout),
                )
                self._conns[addr] = conn
            return conn


def acl_keys(endpoints: Endpoints) -> tuple[str, str] | None:
    """(access key, secret key) from the environment variables ``endpoints`` name, or None
    when the target has no ACL."""
    if not endpoints.acl_access_key_env and not endpoints.acl_secret_key_env:
        return None
    if not (endpoints.acl_access_key_env and endpoints.acl_secret_key_env):
        raise ConfigError(f"{endpoints.label}: RocketMQ ACL needs both the access and secret key")
    return (
        secret_from_env(endpoints.acl_access_key_env, endpoints.label),
        secret_from_env(endpoints.acl_secret_key_env, endpoints.label),
    )


def remoting_client(endpoints: Endpoints, **kw: object) -> RemotingClient:
    """A remoting client for ``endpoints``: signing when the target has ACL."""
    keys = acl_keys(endpoints)
    if keys is None:
        return RemotingClient(endpoints.namesrv, **kw)  # type: ignore[arg-type]
    return SigningRemotingClient(endpoints.namesrv, keys=keys, **kw)
