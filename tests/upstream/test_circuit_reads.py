"""The circuit breaker counts what callers see: one read, retries included, is one outcome."""

from __future__ import annotations

from dataclasses import replace

from aiohttp.test_utils import TestServer

from proxy.appkeys import METRICS
from proxy.config.settings import Settings
from proxy.devtools.simulator import Fault, SimulatorState
from proxy.upstream.circuit import CircuitSettings
from tests.conftest import ProxyFactory, make_settings

ORDER = "JP1636474794"


def tuned(simulator: TestServer, **upstream: object) -> Settings:
    settings = make_settings(simulator.make_url(""))
    upstream = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.02, **upstream}
    return replace(settings, upstream=replace(settings.upstream, **upstream))


def circuit_state(app: object) -> float:
    value = app[METRICS].registry.get_sample_value("order_proxy_circuit_state")  # type: ignore[index]
    return float(value or 0.0)


async def test_a_flaky_upstream_whose_retries_succeed_never_opens_the_circuit(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    # Every read's first attempt fails and its retry succeeds: half of all attempts fail,
    # which is the failure ratio, but no caller ever sees a failure.
    proxy = await make_proxy(settings=tuned(simulator, max_attempts=2))
    for _ in range(15):
        simulator_state.add_fault(Fault(kind="status", status=503, remaining=1))
        resp = await proxy.get(f"/orders/{ORDER}", headers={"Cache-Control": "no-cache"})
        assert resp.status == 200
    assert simulator_state.calls[ORDER] == 30
    assert circuit_state(proxy.app) == 0  # closed


async def test_the_threshold_counts_failed_reads_not_their_attempts(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    simulator_state.add_fault(Fault(kind="status", status=503))
    circuit = CircuitSettings(failure_threshold=5, min_calls=100, open_seconds=60)
    proxy = await make_proxy(settings=tuned(simulator, max_attempts=3, circuit=circuit))
    for read in range(5):
        resp = await proxy.get(f"/orders/{ORDER}")
        assert resp.status == 502, f"read {read + 1}"
        assert (await resp.json())["error_code"] != "upstream_circuit_open"
    assert simulator_state.calls[ORDER] == 15  # three attempts for each of the five reads
    assert circuit_state(proxy.app) == 2  # the fifth failed read opened it
    fast = await proxy.get(f"/orders/{ORDER}")
    assert fast.status == 503
    assert (await fast.json())["error_code"] == "upstream_circuit_open"
    assert simulator_state.calls[ORDER] == 15


async def test_a_read_that_recovers_after_retries_resets_the_run_of_failures(
    make_proxy: ProxyFactory, simulator_state: SimulatorState, simulator: TestServer
) -> None:
    circuit = CircuitSettings(failure_threshold=2, min_calls=100, open_seconds=60)
    proxy = await make_proxy(settings=tuned(simulator, max_attempts=3, circuit=circuit))
    simulator_state.add_fault(Fault(kind="status", status=503, remaining=3))
    assert (await proxy.get(f"/orders/{ORDER}")).status == 502  # one failed read
    simulator_state.add_fault(Fault(kind="status", status=503, remaining=2))
    assert (await proxy.get(f"/orders/{ORDER}")).status == 200  # two failed attempts, then 200
    simulator_state.add_fault(Fault(kind="status", status=503, remaining=3))
    assert (await proxy.get(f"/orders/NOPE-{ORDER}")).status == 502  # one failed read again
    assert circuit_state(proxy.app) == 0
