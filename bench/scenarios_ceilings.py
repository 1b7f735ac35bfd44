"""Ceiling scenarios: what a bare server, one Redis GET, a plain forward and nginx achieve."""

from __future__ import annotations

import time
from typing import Any

from bench.env import HIT_ORDER, PENDING_CYCLE, PENDING_PREFIX, Env, start_python_server
from bench.harness import AUTHORIZATION, MERCHANT, SERVER_CORE, BenchError, find_binary, free_port
from bench.measure import expect, measure


def _from_memory(env: Env, module: str) -> dict[str, Any]:
    """A ceiling server (`bench/<module>.py`) answering the bench body from memory."""
    proc, port = start_python_server(env, module, "--body-file", str(env.body_file))
    try:
        expect(port, f"/orders/{HIT_ORDER}", body=env.body)
        return measure(env, port, f"/orders/{HIT_ORDER}", proc)
    finally:
        env.procs.stop(proc)


def scenario_bare(env: Env) -> dict[str, Any]:
    return _from_memory(env, "ceiling_bare")


def scenario_lowlevel(env: Env) -> dict[str, Any]:
    return _from_memory(env, "ceiling_lowlevel")


def scenario_redis_get(env: Env) -> dict[str, Any]:
    if env.redis is None or env.redis_url is None:
        raise BenchError("redis-server is not installed")
    proc, port = start_python_server(
        env, "ceiling_redis", "--body-file", str(env.body_file), "--redis-url", env.redis_url
    )
    try:
        expect(port, f"/orders/{HIT_ORDER}", body=env.body)
        return measure(env, port, f"/orders/{HIT_ORDER}", proc, {"redis": env.redis})
    finally:
        env.procs.stop(proc)


def scenario_forward(env: Env) -> dict[str, Any]:
    upstream = f"http://127.0.0.1:{env.sim_port}"
    proc, port = start_python_server(env, "ceiling_forward", "--upstream", upstream)
    try:
        expect(port, f"/orders/{PENDING_PREFIX}0", body=None)
        return measure(env, port, "/", proc, {"simulator": env.sim}, script_args=PENDING_CYCLE)
    finally:
        env.procs.stop(proc)


NGINX_CONF = """\
# Written by bench/run.py: nginx proxy_cache in front of the simulator, one process.
error_log {tmp}/nginx-error.log warn;
pid {tmp}/nginx.pid;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy-temp;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=orders:10m max_size=256m
                     inactive=1h use_temp_path=off;
    upstream juspay {{
        server 127.0.0.1:{sim_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /orders/ {{
            proxy_pass http://juspay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "{authorization}";
            proxy_set_header x-merchantid {merchant};
            proxy_cache orders;
            proxy_cache_key $uri;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


def scenario_nginx(env: Env) -> dict[str, Any]:
    nginx = find_binary("nginx")
    if nginx is None:
        raise BenchError("nginx is not installed")
    port = free_port()
    prefix = env.tmp / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=prefix,
            sim_port=env.sim_port,
            port=port,
            authorization=AUTHORIZATION,
            merchant=MERCHANT,
        )
    )
    argv = [nginx, "-p", f"{prefix}/", "-c", str(conf), "-g", "daemon off; master_process off;"]
    proc = env.procs.start("nginx", argv, core=SERVER_CORE)
    try:
        path = f"/orders/{HIT_ORDER}"
        deadline = time.monotonic() + 10
        while True:
            try:
                expect(port, path, body=env.body)  # the first one fills the cache
                break
            except OSError:
                if time.monotonic() > deadline or not proc.alive():
                    raise BenchError(f"nginx did not start: {proc.log_tail()}") from None
                time.sleep(0.05)
        expect(port, path, body=env.body, x_cache="HIT")
        return measure(env, port, path, proc)
    finally:
        env.procs.stop(proc)
