"""A Juspay-compatible order-status server for the demo, the tests and the benchmarks.

It checks credentials the way Juspay does (Basic auth with the API key as username, 401
`access_denied` otherwise), answers unknown orders with Juspay's 400 NOT_FOUND, serves orders
seeded from Juspay's published samples or put through its control API (any field: offers,
mandate, chargebacks, txn_detail, gateway response; or a whole body), plays scripted
lifecycles, injects faults, and fires Juspay's webhooks at a proxy (Basic, or JWT webhooks:
JWS RS256 inside JWE RSA-OAEP-256/A256GCM). docs/simulator.md documents every route. It
listens on loopback only unless told otherwise; it is a test double, not a server to expose.

Modules: bodies (Juspay-shaped bodies), state (orders, faults, reads in flight), faults,
upstream (the order-status routes), control and parsing (the /__sim/ API), events (webhook
payloads), jwt (keys and tokens), webhooks (sending them), app.
"""

from proxy.devtools.simulator.app import create_simulator_app
from proxy.devtools.simulator.bodies import STATUS_IDS, load_sample, sample_names
from proxy.devtools.simulator.errors import ControlError
from proxy.devtools.simulator.faults import FAULT_KINDS, Fault
from proxy.devtools.simulator.state import (
    SIMULATOR_STATE,
    RecordedRequest,
    SimOrder,
    SimulatorState,
    Stage,
)
from proxy.devtools.simulator.upstream import basic_key

__all__ = [
    "FAULT_KINDS",
    "SIMULATOR_STATE",
    "STATUS_IDS",
    "ControlError",
    "Fault",
    "RecordedRequest",
    "SimOrder",
    "SimulatorState",
    "Stage",
    "basic_key",
    "create_simulator_app",
    "load_sample",
    "sample_names",
]
