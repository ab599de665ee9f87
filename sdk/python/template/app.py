"""A minimal Courier handler in Python: logs every `order.placed` event and succeeds.

Build it from the repository root:

    sdk/python/build sdk/python/template wit handler-plugin my-handler.wasm

and try it:

    courier test my-handler.wasm --message '{"name":"order.placed","payload":{"id":7}}'
"""

import json

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.courier_plugin_types import (
    Delivery,
    Outcome,
    Outcome_Fatal,
    Outcome_Ok,
    Outcome_Retry,
    PluginInfo,
    Retry,
    Subscription,
)


class Handler(exports.Handler):
    """componentize-py looks for a class named after the exported interface (`handler`)."""

    def describe(self) -> PluginInfo:
        # Called once at load time: no config, no deliveries here.
        return PluginInfo(
            name="my-handler",
            version="0.1.0",
            subscriptions=[Subscription(queue="orders", topic="order", events=["placed"])],
        )

    def handle(self, delivery: Delivery) -> Outcome:
        message = delivery.message
        try:
            order = json.loads(message.payload)
        except ValueError as err:
            # Fatal: retrying cannot fix a malformed payload; it goes to the dead letters.
            return Outcome_Fatal(f"payload is not JSON: {err}")

        if delivery.attempt > 10:
            return Outcome_Fatal("giving up after 10 attempts")
        if host.config("paused") == "true":
            # Retry: the host tries again later (after 60 s here; None lets the policy decide).
            return Outcome_Retry(Retry(reason="paused by the operator", delay_ms=60_000))

        host.log(host.Level.INFO, f"order {order.get('id')} placed ({message.id}, attempt {delivery.attempt})")
        return Outcome_Ok()
