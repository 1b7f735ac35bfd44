"""Juspay's JWT webhooks on the wire: algorithms, body shapes, JOSE headers, refusal reasons."""

from __future__ import annotations

import base64
import re
from typing import Any, Final

import msgspec

from proxy.config.keyfiles import valid_kid

# What Juspay sends: its sample uses RSA-OAEP-256, its Node SDK RSA-OAEP; both with A256GCM
# around a JWS signed RS256. Nothing else is accepted (no "none", no HMAC, no compression).
KEY_ALGORITHMS: Final = frozenset({"RSA-OAEP", "RSA-OAEP-256"})
CONTENT_ENCRYPTION: Final = "A256GCM"
SIGNATURE_ALGORITHM: Final = "RS256"
DEFAULT_CLOCK_SKEW_SECONDS: Final = 300
DEFAULT_REPLAY_CACHE_SIZE: Final = 100_000
MAX_TOKEN_BYTES: Final = 1024 * 1024

# Why a token was refused: a bounded set, safe as a metric label.
MALFORMED: Final = "malformed"  # not JSON, not five parts, bad base64, header or payload
NOT_ENCRYPTED: Final = "not_encrypted"  # no JWT member, or a bare JWS where a JWE is required
BAD_ALGORITHM: Final = "bad_algorithm"  # JWE alg/enc or JWS alg outside the list ("none" too)
BAD_HEADER: Final = "bad_header"  # zip, crit, b64 and other header parameters we refuse
UNKNOWN_KID: Final = "unknown_kid"  # the token names a key id that is not configured
DECRYPT_FAILED: Final = "decrypt_failed"  # wrong key, or tampered key/iv/ciphertext/tag/header
BAD_SIGNATURE: Final = "bad_signature"  # not signed by any configured Juspay key
EXPIRED: Final = "expired"  # past exp, or issued longer ago than max_age_seconds
BAD_TIMESTAMP: Final = "bad_timestamp"  # no usable iat/exp/date_created, or one in the future
REPLAYED: Final = "replayed"  # this signed payload was already handled
REASONS: Final = frozenset(
    {
        MALFORMED,
        NOT_ENCRYPTED,
        BAD_ALGORITHM,
        BAD_HEADER,
        UNKNOWN_KID,
        DECRYPT_FAILED,
        BAD_SIGNATURE,
        EXPIRED,
        BAD_TIMESTAMP,
        REPLAYED,
    }
)

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
# Header parameters refused outright: compression (a decompression bomb before the signature is
# checked), critical extensions and unencoded payloads (RFC 7797).
REFUSED_HEADERS = frozenset({"zip", "crit", "b64"})


class WebhookTokenError(Exception):
    """A JWT webhook was refused. `reason` is one of REASONS; nothing secret is ever in it.

    `kid` is the key id the token named, when it is printable (for logs, not metrics).
    """

    def __init__(
        self, reason: str, *, kid: str | None = None, payload: bytes | None = None
    ) -> None:
        super().__init__(f"JWT webhook refused: {reason}")
        self.reason = reason
        self.kid = kid
        # REPLAYED only: the authentic event, so the copy can be counted as the event it is.
        self.payload = payload


# --- wire shapes ------------------------------------------------------------------------------


class _SdkJwe(msgspec.Struct, forbid_unknown_fields=True):
    """Juspay's SDKs' JSON spelling of a compact JWE (five named parts)."""

    header: str
    encrypted_key: str = msgspec.field(name="encryptedKey")
    iv: str
    encrypted_payload: str = msgspec.field(name="encryptedPayload")
    tag: str

    def compact(self) -> str:
        return ".".join(
            (self.header, self.encrypted_key, self.iv, self.encrypted_payload, self.tag)
        )


class _SdkJws(msgspec.Struct, forbid_unknown_fields=True):
    """Juspay's SDKs' JSON spelling of a compact JWS: what their JWE holds."""

    header: str
    payload: str
    signature: str

    def compact(self) -> str:
        return f"{self.header}.{self.payload}.{self.signature}"


class _Body(msgspec.Struct):
    jwt: str | _SdkJwe | None = msgspec.field(default=None, name="JWT")


_body_decoder = msgspec.json.Decoder(_Body)
sdk_jws_decoder = msgspec.json.Decoder(_SdkJws)


def token_of(body: bytes) -> str | None:
    """The compact JWE in a `{"JWT": ...}` body; None when the body carries no JWT member.

    Raises WebhookTokenError(MALFORMED) when the body is not a JSON object of that shape.
    """
    try:
        decoded = _body_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise WebhookTokenError(MALFORMED) from None
    if decoded.jwt is None:
        return None
    if isinstance(decoded.jwt, _SdkJwe):
        return decoded.jwt.compact()
    return decoded.jwt


def peek_kid(token: str) -> str | None:
    """The `kid` a JWE names, unauthenticated: only for choosing which keyring to try."""
    header = header_of(token.partition(".")[0].encode("ascii", errors="replace"))
    return None if header is None else printable_kid(header.get("kid"))


def header_of(segment: bytes) -> dict[str, Any] | None:
    """A JOSE header segment as a dict; None when it is not base64url of a JSON object."""
    if not segment or _B64URL.fullmatch(segment) is None:
        return None
    try:
        value = msgspec.json.decode(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except ValueError:  # binascii.Error and msgspec.DecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def printable_kid(value: object) -> str | None:
    return value if isinstance(value, str) and valid_kid(value) else None
