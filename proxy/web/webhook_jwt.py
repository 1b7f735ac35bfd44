"""Juspay's JWT webhooks: open a `{"JWT": "<JWE>"}` body with a merchant's keyring, or refuse it."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

# Key files are parsed by config (checked at start-up); a keyring re-reads them when they change.
from proxy.config.keyfiles import (
    DEFAULT_MAX_AGE_SECONDS,
    KeyFileError,
    parse_private,
    parse_public,
    read_key_file,
)
from proxy.config.secrets import Secret, SecretFile
from proxy.web.jwt_wire import (
    BAD_ALGORITHM,
    BAD_HEADER,
    BAD_SIGNATURE,
    BAD_TIMESTAMP,
    CONTENT_ENCRYPTION,
    DECRYPT_FAILED,
    DEFAULT_CLOCK_SKEW_SECONDS,
    DEFAULT_REPLAY_CACHE_SIZE,
    EXPIRED,
    KEY_ALGORITHMS,
    MALFORMED,
    MAX_TOKEN_BYTES,
    NOT_ENCRYPTED,
    REASONS,
    REFUSED_HEADERS,
    REPLAYED,
    SIGNATURE_ALGORITHM,
    UNKNOWN_KID,
    WebhookTokenError,
    header_of,
    peek_kid,
    printable_kid,
    sdk_jws_decoder,
    token_of,
)

# joserfc (and cryptography under it) cost ~9 MiB of memory: imported only by a keyring, so a
# proxy without JWT webhooks never loads them.
if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

# The wire names are re-exported: callers read the reasons and token helpers from here.
__all__ = [
    "BAD_ALGORITHM",
    "BAD_HEADER",
    "BAD_SIGNATURE",
    "BAD_TIMESTAMP",
    "CONTENT_ENCRYPTION",
    "DECRYPT_FAILED",
    "EXPIRED",
    "KEY_ALGORITHMS",
    "MALFORMED",
    "NOT_ENCRYPTED",
    "REASONS",
    "REPLAYED",
    "SIGNATURE_ALGORITHM",
    "UNKNOWN_KID",
    "JwtKeyring",
    "VerifiedWebhook",
    "WebhookTokenError",
    "peek_kid",
    "token_of",
]

log = structlog.get_logger("proxy.jwt_webhooks")


@dataclass(frozen=True, slots=True, repr=False)
class VerifiedWebhook:
    """A decrypted, verified, fresh webhook. `payload` is the event JSON exactly as signed."""

    payload: bytes
    kid: str  # the configured key id whose private key decrypted it
    signing_kid: str  # the configured key id whose Juspay public key verified it
    issued_at: float | None  # from iat, else the event's date_created (epoch seconds)
    replay_key: bytes  # SHA-256 of the JWS signature: the same signed payload, however wrapped

    def __repr__(self) -> str:
        return (
            f"VerifiedWebhook(kid={self.kid!r}, signing_kid={self.signing_kid!r}, "
            f"payload=<{len(self.payload)} bytes>)"
        )


# --- keys -------------------------------------------------------------------------------------


class _KeyFile:
    """One PEM key file, re-read when it changes (SecretFile's rule), parsed once per change.

    A new content that does not parse keeps the last good key (and logs the file's path once).
    """

    __slots__ = ("_file", "_key", "_parse", "_parsed_from", "path")

    def __init__(
        self, path: Path, parse: Callable[[Path, str], RSAKey], *, check_interval: float
    ) -> None:
        text = read_key_file(path)
        self.path = path
        self._parse = parse
        self._key = parse(path, text)
        self._file = SecretFile(path, Secret(text, f"file:{path}"), check_interval=check_interval)
        self._parsed_from = self._file.get()

    def get(self) -> RSAKey:
        secret = self._file.get()
        if secret is not self._parsed_from:
            self._parsed_from = secret
            try:
                self._key = self._parse(self.path, secret.reveal())
            except KeyFileError:
                log.warning("jwt_key_file_unusable", path=str(self.path), kept="previous key")
        return self._key

    def __repr__(self) -> str:
        return f"_KeyFile({str(self.path)!r})"


# --- the keyring ------------------------------------------------------------------------------


class JwtKeyring:
    """One merchant's keys for Juspay's JWT webhooks, and the checks every token must pass.

    `private_key_files` maps a key id (the `kid` of Juspay's JWE header, the key's UUID on the
    dashboard) to the merchant's RSA private key that decrypts it; `public_key_files` maps a key
    id (the `kid` of the inner JWS header) to Juspay's RSA public key that verifies it. Juspay's
    SDKs put the same key id in both headers. Files are re-read when they change.

    Key choice: a token that names a kid is opened with that key only, and a kid that is not
    configured is refused (UNKNOWN_KID); a token that names none is tried with each configured
    key in turn (a wrong key fails cleanly: RSA-OAEP and AES-GCM check themselves).

    Age: `exp` (if the payload has it) must not be past; the issue time (`iat`, else the event's
    `date_created`) must be within `max_age_seconds`; clocks may differ by `clock_skew_seconds`.
    Juspay's SDKs sign the bare event, so `date_created` is what normally applies.

    Replays: `mark_handled` remembers a token's signed payload until it is too old to pass the
    age check (at most `replay_cache_size` entries, oldest dropped first); `verify_body` refuses
    one it has seen (REPLAYED). RS256 signatures are deterministic, so a Juspay retry of an event
    already handled is REPLAYED too: answer it 200, as its first copy took effect. Mark a token
    only once its webhook took effect, so a retry of one that failed is still accepted.
    In-process only: each replica keeps its own.
    """

    def __init__(
        self,
        *,
        private_key_files: Mapping[str, Path],
        public_key_files: Mapping[str, Path],
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock_skew_seconds: float = DEFAULT_CLOCK_SKEW_SECONDS,
        check_interval: float = 1.0,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not private_key_files or not public_key_files:
            raise ValueError("a JWT keyring needs at least one private and one public key file")
        self._private = {
            kid: _KeyFile(path, parse_private, check_interval=check_interval)
            for kid, path in private_key_files.items()
        }
        self._public = {
            kid: _KeyFile(path, parse_public, check_interval=check_interval)
            for kid, path in public_key_files.items()
        }
        self._max_age = float(max_age_seconds)
        self._skew = float(clock_skew_seconds)
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._seen_max = max(1, replay_cache_size)
        self._lock = threading.Lock()  # verify may run in a worker thread (RSA costs ~1 ms)
        from joserfc import jwe, jws  # noqa: PLC0415 - see the imports at the top

        self._jwe_registry = jwe.JWERegistry(
            algorithms=[*sorted(KEY_ALGORITHMS), CONTENT_ENCRYPTION], strict_check_header=False
        )
        self._jws_registry = jws.JWSRegistry(
            algorithms=[SIGNATURE_ALGORITHM], strict_check_header=False
        )
        # joserfc's defaults (64 KB of ciphertext, 128 KB of payload) could refuse a large order.
        self._jwe_registry.max_ciphertext_length = MAX_TOKEN_BYTES
        self._jws_registry.max_payload_length = MAX_TOKEN_BYTES

    @property
    def kids(self) -> tuple[str, ...]:
        """The key ids of the merchant's private keys (the JWE `kid`s this keyring opens)."""
        return tuple(self._private)

    @property
    def signing_kids(self) -> tuple[str, ...]:
        """The key ids of Juspay's public keys (the JWS `kid`s this keyring trusts)."""
        return tuple(self._public)

    def decode_body(self, body: bytes) -> bytes:
        """verify_body, then mark_handled: the event JSON of a good, fresh, first-seen token."""
        verified = self.verify_body(body)
        self.mark_handled(verified)
        return verified.payload

    def verify_body(self, body: bytes) -> VerifiedWebhook:
        """Open a webhook body `{"JWT": "<compact JWE>"}`; WebhookTokenError when refused."""
        token = token_of(body)
        if token is None:
            raise WebhookTokenError(NOT_ENCRYPTED)
        return self.verify_token(token)

    def verify_token(self, token: str) -> VerifiedWebhook:
        """Decrypt, verify and check the age of one compact JWE; refuse a handled one."""
        raw = token.strip().encode("ascii", errors="replace")
        if len(raw) > MAX_TOKEN_BYTES:
            raise WebhookTokenError(MALFORMED)
        parts = raw.split(b".")
        if len(parts) == 3:
            raise WebhookTokenError(NOT_ENCRYPTED)
        if len(parts) != 5:
            raise WebhookTokenError(MALFORMED)
        kid, signed = self._decrypt(raw, parts[0])
        signing_kid, payload, signature = self._verify(signed)
        issued_at = self._check_age(payload)
        replay_key = hashlib.sha256(signature).digest()
        if self._was_handled(replay_key):
            raise WebhookTokenError(REPLAYED, kid=kid, payload=payload)
        return VerifiedWebhook(payload, kid, signing_kid, issued_at, replay_key)

    def mark_handled(self, verified: VerifiedWebhook) -> None:
        """Remember a token once its webhook took effect, so a copy of it is refused."""
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            self._seen[verified.replay_key] = now + self._max_age + self._skew
            self._seen.move_to_end(verified.replay_key)
            while len(self._seen) > self._seen_max:
                self._seen.popitem(last=False)

    def _was_handled(self, replay_key: bytes) -> bool:
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            return replay_key in self._seen

    def _forget_expired(self, now: float) -> None:
        # Entries share one lifetime, so insertion order is expiry order.
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[key]

    def _decrypt(self, raw: bytes, header_segment: bytes) -> tuple[str, bytes]:
        header = header_of(header_segment)
        if header is None:
            raise WebhookTokenError(MALFORMED)
        named = header.get("kid")
        kid = printable_kid(named)
        if header.get("alg") not in KEY_ALGORITHMS or header.get("enc") != CONTENT_ENCRYPTION:
            raise WebhookTokenError(BAD_ALGORITHM, kid=kid)
        if REFUSED_HEADERS & header.keys():
            raise WebhookTokenError(BAD_HEADER, kid=kid)
        from joserfc import errors, jwe  # noqa: PLC0415 - see the imports at the top

        candidates = self._candidates(self._private, named, kid)
        for candidate_kid, key_file in candidates:
            try:
                opened = jwe.decrypt_compact(raw, key_file.get(), registry=self._jwe_registry)
            except errors.ExceededSizeError:
                raise WebhookTokenError(MALFORMED, kid=kid) from None
            except (errors.JoseError, ValueError) as exc:
                reason = _refused(exc)
                if reason is not None:
                    raise WebhookTokenError(reason, kid=kid) from None
                continue  # wrong key or tampered: try the next one, if any
            if opened.plaintext is None:
                continue
            return candidate_kid, opened.plaintext
        raise WebhookTokenError(DECRYPT_FAILED, kid=kid)

    def _verify(self, signed: bytes) -> tuple[str, bytes, bytes]:
        """(signing kid, payload, signature segment) of the JWS the JWE held."""
        signed = signed.strip()
        if signed.startswith(b"{"):
            # Juspay's SDKs encrypt {"header", "payload", "signature"} rather than a compact JWS.
            try:
                signed = sdk_jws_decoder.decode(signed).compact().encode("ascii")
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeEncodeError):
                raise WebhookTokenError(MALFORMED) from None
        parts = signed.split(b".")
        if len(parts) != 3:
            raise WebhookTokenError(MALFORMED)
        header = header_of(parts[0])
        if header is None:
            raise WebhookTokenError(MALFORMED)
        named = header.get("kid")
        kid = printable_kid(named)
        if header.get("alg") != SIGNATURE_ALGORITHM:
            raise WebhookTokenError(BAD_ALGORITHM, kid=kid)
        if REFUSED_HEADERS & header.keys():
            raise WebhookTokenError(BAD_HEADER, kid=kid)
        from joserfc import errors, jws  # noqa: PLC0415 - see the imports at the top

        for candidate_kid, key_file in self._candidates(self._public, named, kid):
            try:
                verified = jws.deserialize_compact(
                    signed, key_file.get(), registry=self._jws_registry
                )
            except errors.BadSignatureError:
                continue
            except (errors.JoseError, ValueError) as exc:
                raise WebhookTokenError(_refused(exc) or MALFORMED, kid=kid) from None
            return candidate_kid, verified.payload, parts[2]
        raise WebhookTokenError(BAD_SIGNATURE, kid=kid)

    @staticmethod
    def _candidates(
        keys: Mapping[str, _KeyFile], named: object, kid: str | None
    ) -> list[tuple[str, _KeyFile]]:
        if named is None:
            return list(keys.items())
        key_file = keys.get(named) if isinstance(named, str) else None
        if key_file is None or kid is None:
            raise WebhookTokenError(UNKNOWN_KID, kid=kid)
        return [(kid, key_file)]

    def _check_age(self, payload: bytes) -> float | None:
        """The issue time; WebhookTokenError when the payload is too old, or says nothing."""
        try:
            event = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            raise WebhookTokenError(MALFORMED) from None
        if not isinstance(event, dict):
            raise WebhookTokenError(MALFORMED)
        now = self._clock()
        expires = _epoch(event, "exp")
        issued = _epoch(event, "iat")
        if issued is None:
            issued = _stamp(event.get("date_created"))
        if expires is None and issued is None:
            raise WebhookTokenError(BAD_TIMESTAMP)
        if expires is not None and now > expires + self._skew:
            raise WebhookTokenError(EXPIRED)
        if issued is not None:
            if issued > now + self._skew:
                raise WebhookTokenError(BAD_TIMESTAMP)
            if now - issued > self._max_age:
                raise WebhookTokenError(EXPIRED)
        return issued

    def __repr__(self) -> str:
        return f"JwtKeyring(kids={list(self._private)!r}, signing_kids={list(self._public)!r})"


def _refused(exc: Exception) -> str | None:
    """Why joserfc's error refuses the token whatever the key (None: only this key failed)."""
    from joserfc import errors  # noqa: PLC0415 - see the imports at the top

    if isinstance(exc, errors.UnsupportedAlgorithmError):
        return BAD_ALGORITHM
    if isinstance(
        exc,
        errors.UnsupportedHeaderError
        | errors.MissingCritHeaderError
        | errors.InvalidHeaderValueError,
    ):
        return BAD_HEADER
    return None


def _epoch(event: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim; absent is None, anything but a number is BAD_TIMESTAMP."""
    if name not in event:
        return None
    value = event[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WebhookTokenError(BAD_TIMESTAMP)
    return float(value)


def _stamp(value: object) -> float | None:
    """Juspay's `date_created` ("2023-08-10T07:00:48Z") as epoch seconds; UTC when unzoned."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise WebhookTokenError(BAD_TIMESTAMP)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise WebhookTokenError(BAD_TIMESTAMP) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
