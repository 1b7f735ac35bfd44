"""The simulator's aiohttp application: Juspay's order-status routes and the /__sim/ API."""

from __future__ import annotations

from aiohttp import web

from proxy.devtools.simulator import control, webhooks
from proxy.devtools.simulator.parsing import control_errors
from proxy.devtools.simulator.state import SIMULATOR_STATE, SimulatorState
from proxy.devtools.simulator.upstream import order_status


async def _wake_sleepers(app: web.Application) -> None:
    app[SIMULATOR_STATE].close()


def create_simulator_app(state: SimulatorState | None = None) -> web.Application:
    app = web.Application(middlewares=[control_errors])
    app[SIMULATOR_STATE] = state if state is not None else SimulatorState()
    app.on_shutdown.append(_wake_sleepers)
    app.router.add_get("/orders/{order_id}", order_status)
    app.router.add_get("/order/status", order_status)
    app.router.add_get("/__sim/stats", control.stats)
    app.router.add_get("/__sim/requests", control.recorded_requests)
    app.router.add_get("/__sim/orders", control.list_orders)
    app.router.add_post("/__sim/orders", control.put_order)
    app.router.add_post("/__sim/refunds", control.add_refund)
    app.router.add_post("/__sim/advance", control.advance)
    app.router.add_post("/__sim/faults", control.faults)
    app.router.add_delete("/__sim/faults", control.faults)
    app.router.add_post("/__sim/reset", control.reset)
    app.router.add_post("/__sim/wait_in_flight", control.wait_in_flight)
    app.router.add_post("/__sim/webhooks", webhooks.fire_webhook)
    app.router.add_get("/__sim/jwt/{merchant_id}", webhooks.show_jwt)
    app.router.add_put("/__sim/jwt/{merchant_id}", webhooks.put_jwt)
    return app
