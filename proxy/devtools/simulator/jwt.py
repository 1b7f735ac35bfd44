"""JWT webhooks as Juspay sends them: the event signed (JWS RS256) with the simulator's key for
the merchant, then encrypted (JWE RSA-OAEP-256 + A256GCM, with the `kid`) to the merchant's
public key, in a `{"JWT": "<compact JWE>"}` body.

The simulator plays Juspay's dashboard too: it holds a signing key pair per merchant (made on
first use; its public half is "Juspay's public key") and the merchant's public key with its
`kid` (uploaded, or made here with its private half written to a folder for the proxy).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.devtools.simulator.errors import ControlError
from proxy.web.jwt_wire import CONTENT_ENCRYPTION, SIGNATURE_ALGORITHM

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

# What Juspay's own sample header shows; the proxy accepts RSA-OAEP too (Juspay's Node SDK).
KEY_ALGORITHM = "RSA-OAEP-256"
MERCHANT_PRIVATE_FILE = "merchant-private.pem"
JUSPAY_PUBLIC_FILE = "juspay-public.pem"
KID_FILE = "kid"


def new_kid() -> str:
    """A key id in the style of Juspay's dashboard (`key_` and 24 hex digits)."""
    return "key_" + secrets.token_hex(12)


def _generate() -> RSAKey:
    from joserfc.jwk import RSAKey  # noqa: PLC0415 - joserfc only when JWT webhooks are used

    return RSAKey.generate_key(2048)


def _pem(key: RSAKey, *, private: bool) -> bytes:
    return key.as_pem(private=private)


@dataclass
class _MerchantKeys:
    signing: RSAKey  # the simulator's (Juspay's) key pair for this merchant
    recipient: RSAKey | None = None  # the merchant's public key: tokens are encrypted to it
    kid: str | None = None  # its key id, sent in both headers (as Juspay's SDKs do)


class JwtKeys:
    """Per-merchant keys for JWT webhooks, made lazily (RSA key generation costs ~50 ms)."""

    def __init__(self) -> None:
        self._merchants: dict[str, _MerchantKeys] = {}

    def _keys(self, merchant_id: str) -> _MerchantKeys:
        found = self._merchants.get(merchant_id)
        if found is None:
            found = self._merchants[merchant_id] = _MerchantKeys(_generate())
        return found

    def has_recipient(self, merchant_id: str) -> bool:
        found = self._merchants.get(merchant_id)
        return found is not None and found.recipient is not None

    def describe(self, merchant_id: str) -> dict[str, Any]:
        """What a merchant reads off Juspay's dashboard: Juspay's public key, and the kid."""
        keys = self._keys(merchant_id)
        return {
            "merchant_id": merchant_id,
            "kid": keys.kid,
            "juspay_public_key_pem": _pem(keys.signing, private=False).decode(),
            "merchant_public_key_set": keys.recipient is not None,
        }

    def set_recipient(self, merchant_id: str, kid: str, public_pem: str) -> None:
        """The merchant's public key (as uploaded to the dashboard) and its kid."""
        from joserfc.jwk import RSAKey  # noqa: PLC0415 - see _generate

        try:
            key = RSAKey.import_key(public_pem.encode())
        except (ValueError, TypeError) as exc:
            raise ControlError(f"'public_key_pem' is not a PEM RSA public key ({exc})") from None
        if key.is_private:
            raise ControlError("'public_key_pem' holds a private key: send its public half")
        keys = self._keys(merchant_id)
        keys.recipient, keys.kid = key, kid

    def write_files(self, merchant_id: str, folder: Path) -> dict[str, str]:
        """Make the merchant's key pair (as the dashboard can), keep its public half, and write
        what the proxy needs: the merchant's private key, Juspay's public key and the kid."""
        merchant = _generate()
        kid = new_kid()
        keys = self._keys(merchant_id)
        keys.recipient, keys.kid = merchant, kid
        folder.mkdir(parents=True, exist_ok=True)
        private = folder / MERCHANT_PRIVATE_FILE
        private.touch(mode=0o600)
        private.write_bytes(_pem(merchant, private=True))
        public = folder / JUSPAY_PUBLIC_FILE
        public.write_bytes(_pem(keys.signing, private=False))
        (folder / KID_FILE).write_text(kid + "\n")
        return {"kid": kid, "private_key_file": str(private), "public_key_file": str(public)}

    def token(self, merchant_id: str, payload: bytes) -> str:
        """The compact JWE Juspay would send for this event payload."""
        from joserfc import jwe, jws  # noqa: PLC0415 - see _generate

        keys = self._keys(merchant_id)
        if keys.recipient is None or keys.kid is None:
            raise ControlError(
                f"merchant {merchant_id!r} has no JWT key: PUT /__sim/jwt/{merchant_id} with "
                '{"kid": ..., "public_key_pem": ...}, or start the simulator with --jwt-keys'
            )
        signed = jws.serialize_compact(
            {"alg": SIGNATURE_ALGORITHM, "kid": keys.kid}, payload, keys.signing
        )
        protected = {"alg": KEY_ALGORITHM, "enc": CONTENT_ENCRYPTION, "kid": keys.kid}
        # joserfc's default registry holds only its "recommended" algorithms: name ours.
        registry = jwe.JWERegistry(algorithms=[KEY_ALGORITHM, CONTENT_ENCRYPTION])
        return jwe.encrypt_compact(protected, signed, keys.recipient, registry=registry)
