"""The service describes itself, and schemathesis finds no server error or off-spec answer."""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openapi_spec_validator import validate

from proxy.appkeys import METRICS
from proxy.config.secrets import Secret
from proxy.config.settings import ClientSettings, JwtWebhookSettings, WebhookSettings
from proxy.web.auth import hash_key
from proxy.web.openapi import build_openapi
from tests.conftest import ProxyFactory, make_settings
from tests.support.processes import RedisProcess

OPERATOR_KEY = "opk_schemathesis_operator_0123456789"


def test_the_spec_is_valid_openapi() -> None:
    validate(build_openapi())


async def test_served_spec_matches_the_built_one(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    served = await (await proxy.get("/openapi.json")).json()
    assert served == build_openapi()


def _pem(path: Path, *, private: bool) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if private:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        data = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    path.write_bytes(data)
    return path


async def test_schemathesis_finds_no_server_error_and_no_off_spec_answer(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess, tmp_path: Path
) -> None:
    # The webhook endpoint is fuzzed for real: the shared Basic pair is the credentials
    # schemathesis sends everywhere, and the default merchant also takes JWT webhooks.
    jwt = JwtWebhookSettings(
        private_key_files=(("key_st", _pem(tmp_path / "merchant.pem", private=True)),),
        public_key_files=(("key_st", _pem(tmp_path / "juspay.pem", private=False)),),
    )
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis_server.url,
        clients=(ClientSettings("st", hash_key(OPERATOR_KEY), ("*",), operator=True),),
        webhook=WebhookSettings(OPERATOR_KEY, Secret("", "test")),
    )
    first, *others = settings.merchants
    settings = replace(settings, merchants=(replace(first, jwt=jwt), *others))
    proxy = await make_proxy(settings=settings)
    binary = Path(sys.executable).with_name("schemathesis")
    command = str(binary) if binary.exists() else shutil.which("schemathesis")
    assert command, "schemathesis is a dev dependency: run `make test` to install it"
    auth = base64.b64encode(f"{OPERATOR_KEY}:".encode()).decode()
    proc = await asyncio.create_subprocess_exec(
        command,
        "run",
        str(proxy.make_url("/openapi.json")),
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,response_headers_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "40",
        "--workers",
        "1",
        "--seed",
        "20261121",
        "-H",
        f"Authorization: Basic {auth}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    assert "passed" in text
    # The fuzzing got past the webhook's authentication, both ways.
    webhook_codes = {
        sample.labels["code"]
        for family in proxy.app[METRICS].registry.collect()
        if family.name == "order_proxy_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["route"] == "webhook" and sample.value
    }
    assert {"200", "400", "401"} <= webhook_codes
