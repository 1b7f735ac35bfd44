"""Credentials: merchants and their API keys, webhook passwords and JWT key files, from env or file.

Secret values are read into `Secret` objects and never appear in an error: errors name the
variable, the file or the file's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from proxy.config import keyfiles
from proxy.config.errors import SettingsError
from proxy.config.fields import number
from proxy.config.meta import bounds
from proxy.config.secrets import Secret, read_secret_file
from proxy.config.settings import JwtWebhookSettings, MerchantSettings, WebhookSettings
from proxy.config.tomlfile import FileConfig, MerchantToml
from proxy.core import validators


def _secret_from_file(name: str, path_text: str) -> tuple[Secret, Path]:
    path = Path(path_text)
    try:
        value = read_secret_file(path)
    except OSError as exc:
        raise SettingsError(name, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(name, f"{path} is not UTF-8 text") from None
    _check_secret_text(name, value)
    return Secret(value, f"file:{path}"), path


def _check_secret_text(name: str, value: str) -> None:
    if not value:
        raise SettingsError(name, "is empty")
    if any(not ("\x21" <= ch <= "\x7e") for ch in value):
        raise SettingsError(name, "must be printable ASCII without spaces")


def _merchant_id(name: str, raw: str) -> str:
    if not validators.is_merchant_id(raw.strip()):
        raise SettingsError(name, f"not a valid merchant id: {raw!r}")
    return raw.strip()


def _env_merchant(env: Mapping[str, str]) -> MerchantSettings | None:
    merchant_id = env.get("JUSPAY_MERCHANT_ID", "").strip()
    if not merchant_id:
        if _env_has_secret(env, "JUSPAY_API_KEY"):
            raise SettingsError("JUSPAY_MERCHANT_ID", "required when JUSPAY_API_KEY is set")
        return None
    merchant_id = _merchant_id("JUSPAY_MERCHANT_ID", merchant_id)
    secret, path = _env_secret(
        env, "JUSPAY_API_KEY", "required (or JUSPAY_API_KEY_FILE)", strip=True
    )
    return MerchantSettings(merchant_id, secret, path)


def _env_has_secret(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "") or env.get(f"{name}_FILE", "").strip())


def _env_secret(
    env: Mapping[str, str], name: str, missing: str, *, strip: bool
) -> tuple[Secret, Path | None]:
    """The secret in the environment variable `name`, or in the file `name`_FILE names (exactly
    one of them; `missing` says why neither will do). `strip`: the value may carry spaces."""
    value = env.get(name, "")
    file_name = f"{name}_FILE"
    path_text = env.get(file_name, "").strip()
    if value and path_text:
        raise SettingsError(name, f"set either {name} or {file_name}")
    if path_text:
        return _secret_from_file(file_name, path_text)
    if not value:
        raise SettingsError(name, missing)
    if strip:
        value = value.strip()
    _check_secret_text(name, value)
    return Secret(value, f"env:{name}"), None


def _toml_merchant(
    index: int, item: MerchantToml, env: Mapping[str, str], base: Path
) -> MerchantSettings:
    where = f"PROXY_CONFIG_FILE merchants[{index}]"
    merchant_id = _merchant_id(f"{where}.id", item.id)
    if (item.api_key_file is None) == (item.api_key_env is None):
        raise SettingsError(where, "set exactly one of api_key_file or api_key_env")
    if item.api_key_file is not None:
        path = Path(item.api_key_file)
        if not path.is_absolute():
            path = base / path
        secret, path = _secret_from_file(f"{where}.api_key_file", str(path))
        return MerchantSettings(merchant_id, secret, path)
    env_name = item.api_key_env or ""
    value = env.get(env_name, "").strip()
    if not value:
        raise SettingsError(f"{where}.api_key_env", f"environment variable {env_name} is not set")
    _check_secret_text(env_name, value)
    return MerchantSettings(merchant_id, Secret(value, f"env:{env_name}"))


def merchants_from(
    env: Mapping[str, str],
    file: FileConfig,
    base_dir: Path,
    shared_webhook: WebhookSettings | None = None,
) -> tuple[list[MerchantSettings], str | None]:
    """One merchant from the environment and/or a list from the file, and the default."""
    merchants: list[MerchantSettings] = []
    # kid -> merchant: the proxy picks a merchant's keyring by the kid a JWT webhook names.
    kid_owners: dict[str, str] = {}
    env_merchant = _env_merchant(env)
    env_jwt = _env_jwt(env)
    if env_merchant is not None:
        # With JWT keys, a merchant takes plain (Basic) webhooks only with a pair of its own;
        # for JUSPAY_MERCHANT_ID that pair is JUSPAY_WEBHOOK_USERNAME/PASSWORD (a migration
        # keeps both set; unsetting the pair leaves JWT only).
        own_pair = shared_webhook if env_jwt is not None else None
        merchants.append(replace(env_merchant, jwt=env_jwt, webhook=own_pair))
        _claim_kids(kid_owners, merchants[-1], None)
    elif env_jwt is not None:
        raise SettingsError(
            "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE",
            "applies to JUSPAY_MERCHANT_ID, which is not set (list the keys under [[merchants]])",
        )
    for index, item in enumerate(file.merchants):
        merchant = _toml_merchant(index, item, env, base_dir)
        where = f"PROXY_CONFIG_FILE merchants[{index}]"
        merchant = replace(
            merchant,
            webhook=_toml_merchant_webhook(where, item, env, base_dir),
            jwt=_toml_jwt(where, item, base_dir),
        )
        if any(m.merchant_id == merchant.merchant_id for m in merchants):
            raise SettingsError(
                f"PROXY_CONFIG_FILE merchants[{index}].id",
                f"merchant {merchant.merchant_id!r} is listed twice",
            )
        _claim_kids(kid_owners, merchant, where)
        merchants.append(merchant)
    if not merchants:
        raise SettingsError(
            "JUSPAY_MERCHANT_ID", "required (or list [[merchants]] in PROXY_CONFIG_FILE)"
        )
    default_merchant = file.default_merchant
    if default_merchant is not None:
        if not any(m.merchant_id == default_merchant for m in merchants):
            raise SettingsError(
                "PROXY_CONFIG_FILE default_merchant",
                f"{default_merchant!r} is not a listed merchant",
            )
    elif env_merchant is not None:
        default_merchant = env_merchant.merchant_id
    elif len(merchants) == 1:
        default_merchant = merchants[0].merchant_id
    return merchants, default_merchant


def _claim_kids(owners: dict[str, str], merchant: MerchantSettings, where: str | None) -> None:
    """Record the merchant's JWT key ids; a kid another merchant already holds is refused.
    `where` names the file's merchant entry; None: the environment's merchant."""
    if merchant.jwt is None:
        return
    for kid, _ in merchant.jwt.private_key_files:
        owner = owners.setdefault(kid, merchant.merchant_id)
        if owner != merchant.merchant_id:
            raise SettingsError(
                f"{where}.jwt_private_key_files.{kid}" if where else "JUSPAY_WEBHOOK_JWT_KID",
                f"kid {kid!r} is already a key of merchant {owner!r}: JWT key ids must be "
                "unique across merchants (a webhook's kid says whose it is)",
            )


def _toml_merchant_webhook(
    where: str, item: MerchantToml, env: Mapping[str, str], base: Path
) -> WebhookSettings | None:
    """A merchant's own Basic pair for webhooks, or None (the shared pair applies)."""
    password_file, password_env = item.webhook_password_file, item.webhook_password_env
    if item.webhook_username is None:
        if password_file is not None or password_env is not None:
            raise SettingsError(f"{where}.webhook_username", "required with a webhook password")
        return None
    username = item.webhook_username.strip()
    if not username or len(username) > 128 or any(not ("!" <= ch <= "~") for ch in username):
        raise SettingsError(
            f"{where}.webhook_username", "must be 1-128 printable ASCII characters without spaces"
        )
    if ":" in username:
        raise SettingsError(f"{where}.webhook_username", "must not contain ':'")
    if (password_file is None) == (password_env is None):
        raise SettingsError(
            where, "with webhook_username, set exactly one of webhook_password_file or _env"
        )
    if password_file is not None:
        path = Path(password_file)
        if not path.is_absolute():
            path = base / path
        secret, path = _secret_from_file(f"{where}.webhook_password_file", str(path))
        return WebhookSettings(username=username, password=secret, password_file=path)
    env_name = password_env or ""
    value = env.get(env_name, "").strip()
    if not value:
        raise SettingsError(
            f"{where}.webhook_password_env", f"environment variable {env_name} is not set"
        )
    _check_secret_text(env_name, value)
    return WebhookSettings(username=username, password=Secret(value, f"env:{env_name}"))


def _toml_jwt(where: str, item: MerchantToml, base: Path) -> JwtWebhookSettings | None:
    private, public = item.jwt_private_key_files, item.jwt_public_key_files
    if not private and not public:
        if item.jwt_max_age_seconds is not None:
            raise SettingsError(
                f"{where}.jwt_max_age_seconds",
                "only with jwt_private_key_files and jwt_public_key_files",
            )
        return None
    for name, table, other in (
        ("jwt_private_key_files", private, "the merchant's PEM private key"),
        ("jwt_public_key_files", public, "Juspay's PEM public key"),
    ):
        if not table:
            raise SettingsError(
                f"{where}.{name}", f'required for JWT webhooks: a table of kid = "path to {other}"'
            )

    return JwtWebhookSettings(
        private_key_files=_key_files(f"{where}.jwt_private_key_files", private, base, private=True),
        public_key_files=_key_files(f"{where}.jwt_public_key_files", public, base, private=False),
        max_age_seconds=_jwt_max_age(f"{where}.jwt_max_age_seconds", item.jwt_max_age_seconds),
    )


def _key_files(
    name: str, table: dict[str, str], base: Path, *, private: bool
) -> tuple[tuple[str, Path], ...]:
    """(kid, path) pairs of a kid = "path" table; relative paths are relative to the file."""
    pairs: list[tuple[str, Path]] = []
    for kid, path_text in table.items():
        setting = f"{name}.{kid if keyfiles.valid_kid(kid) else repr(kid[:40])}"
        path = Path(path_text)
        path = path if path.is_absolute() else base / path
        pairs.append((_kid(setting, kid), _key_file(setting, path, private=private)))
    return tuple(pairs)


def _env_jwt(env: Mapping[str, str]) -> JwtWebhookSettings | None:
    """JWT webhooks for JUSPAY_MERCHANT_ID: one key pair, as Juspay's SDKs configure it."""
    names = (
        "JUSPAY_WEBHOOK_JWT_KID",
        "JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE",
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE",
        "JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_KID",
        "JUSPAY_WEBHOOK_JWT_MAX_AGE_SECONDS",
    )
    kid, private, public, public_kid, max_age = (env.get(n, "").strip() for n in names)
    if not any((kid, private, public, public_kid, max_age)):
        return None
    for name, value, what in (
        ("JUSPAY_WEBHOOK_JWT_KID", kid, "the key id (kid) of the merchant's JWT key"),
        ("JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE", private, "the merchant's PEM private key file"),
        ("JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE", public, "Juspay's PEM public key file"),
    ):
        if not value:
            raise SettingsError(name, f"required for JWT webhooks: {what}")
    kid = _kid("JUSPAY_WEBHOOK_JWT_KID", kid)
    public_kid = _kid("JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_KID", public_kid) if public_kid else kid
    return JwtWebhookSettings(
        private_key_files=(
            (kid, _key_file("JUSPAY_WEBHOOK_JWT_PRIVATE_KEY_FILE", Path(private), private=True)),
        ),
        public_key_files=(
            (
                public_kid,
                _key_file("JUSPAY_WEBHOOK_JWT_PUBLIC_KEY_FILE", Path(public), private=False),
            ),
        ),
        max_age_seconds=_jwt_max_age("JUSPAY_WEBHOOK_JWT_MAX_AGE_SECONDS", max_age),
    )


def _kid(name: str, raw: str) -> str:
    if not keyfiles.valid_kid(raw):
        raise SettingsError(name, "a kid must be 1-128 printable ASCII characters without spaces")
    return raw


def _key_file(name: str, path: Path, *, private: bool) -> Path:
    """The path of a usable PEM RSA key file; SettingsError (never key material) otherwise."""
    try:
        if private:
            keyfiles.load_private_key(path)
        else:
            keyfiles.load_public_key(path)
    except keyfiles.KeyFileError as exc:
        raise SettingsError(name, str(exc)) from None
    return path


def _jwt_max_age(name: str, raw: str | float | None) -> float:
    if raw is None or raw == "":
        return keyfiles.DEFAULT_MAX_AGE_SECONDS
    low, high = bounds(JwtWebhookSettings, "max_age_seconds")
    return number(name, raw, low=low, high=high)


def webhook_from_env(env: Mapping[str, str]) -> WebhookSettings | None:
    username = env.get("JUSPAY_WEBHOOK_USERNAME", "").strip()
    if not username:
        if _env_has_secret(env, "JUSPAY_WEBHOOK_PASSWORD"):
            raise SettingsError(
                "JUSPAY_WEBHOOK_USERNAME", "required when a webhook password is set"
            )
        return None
    secret, path = _env_secret(
        env,
        "JUSPAY_WEBHOOK_PASSWORD",
        "required when JUSPAY_WEBHOOK_USERNAME is set (or _FILE)",
        strip=False,
    )
    return WebhookSettings(username=username, password=secret, password_file=path)
