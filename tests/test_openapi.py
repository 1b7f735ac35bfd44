"""The service describes itself, and schemathesis finds no server error or off-spec answer."""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate

from proxy.auth import hash_key
from proxy.openapi import build_openapi
from proxy.settings import ClientSettings
from tests.conftest import ProxyFactory, make_settings
from tests.support.processes import RedisProcess

OPERATOR_KEY = "opk_schemathesis_operator_0123456789"


def test_the_spec_is_valid_openapi() -> None:
    validate(build_openapi())


async def test_served_spec_matches_the_built_one(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    served = await (await proxy.get("/openapi.json")).json()
    assert served == build_openapi()


async def test_schemathesis_finds_no_server_error_and_no_off_spec_answer(
    make_proxy: ProxyFactory, simulator: TestServer, redis_server: RedisProcess
) -> None:
    settings = make_settings(
        simulator.make_url(""),
        redis_url=redis_server.url,
        clients=(ClientSettings("st", hash_key(OPERATOR_KEY), ("*",), operator=True),),
    )
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
