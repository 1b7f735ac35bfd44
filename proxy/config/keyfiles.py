"""PEM RSA key files for Juspay's JWT webhooks: read and checked, never showing key material."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

from proxy.config.secrets import read_secret_file

# cryptography and joserfc cost ~9 MiB of memory: imported when a key file is parsed, so a
# proxy without JWT webhooks never loads them.
if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

MIN_RSA_BITS: Final = 2048
# Juspay retries a delivery for about 24 hours and a retry keeps the event's date_created, so
# a day and an hour by default. A webhook only invalidates a cached order: an old one is harmless.
DEFAULT_MAX_AGE_SECONDS: Final = 25 * 3600

_PRINTABLE_KID = re.compile(r"[\x21-\x7e]{1,128}")


class KeyFileError(ValueError):
    """A key file cannot be used; `str()` names the file and the problem, never key material."""


def valid_kid(value: str) -> bool:
    """Whether `value` can name a key: 1-128 printable ASCII characters, no spaces."""
    return _PRINTABLE_KID.fullmatch(value) is not None


def load_private_key(path: Path) -> RSAKey:
    """The merchant's RSA private key (PEM) in `path`, or KeyFileError."""
    return parse_private(path, read_key_file(path))


def load_public_key(path: Path) -> RSAKey:
    """Juspay's RSA public key (PEM public key or certificate) in `path`, or KeyFileError."""
    return parse_public(path, read_key_file(path))


def read_key_file(path: Path) -> str:
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: is not a PEM text file") from None


def parse_private(path: Path, text: str) -> RSAKey:
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 - see the top
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    data = text.encode()
    if b"-----BEGIN" not in data:
        raise KeyFileError(f"{path}: is not a PEM file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            f"{path}: the private key is password-protected; mount it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: does not hold a PEM private key") from None
    return _rsa(path, key, "private")


def parse_public(path: Path, text: str) -> RSAKey:
    from cryptography import x509  # noqa: PLC0415 - see the imports at the top
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    data = text.encode()
    if b"PRIVATE KEY-----" in data:
        # Juspay's public key is what verifies; a private key here is a mix-up (and a leak).
        raise KeyFileError(f"{path}: holds a private key; give Juspay's public key")
    if b"-----BEGIN" not in data:
        raise KeyFileError(f"{path}: is not a PEM file")
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: does not hold a PEM public key or certificate") from None
    return _rsa(path, key, "public")


def _rsa(path: Path, key: object, kind: str) -> RSAKey:
    """`key` as a JWK if it is an RSA key of at least MIN_RSA_BITS, else KeyFileError."""
    from cryptography.hazmat.primitives.asymmetric.rsa import (  # noqa: PLC0415 - see the top
        RSAPrivateKey,
        RSAPublicKey,
    )
    from joserfc.jwk import RSAKey  # noqa: PLC0415

    if not isinstance(key, RSAPrivateKey | RSAPublicKey):
        raise KeyFileError(f"{path}: holds a {kind} key that is not RSA")
    if key.key_size < MIN_RSA_BITS:
        raise KeyFileError(f"{path}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
    return RSAKey.import_key(key)
