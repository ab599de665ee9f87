"""noop-py: answers ok at once, without reading anything.

The Python twin of the Rust `noop` plugin, for measuring what a delivery to a Python
component costs the host (`courier bench --plugin plugins/noop-py.wasm`).
"""

from wit_world import exports
from wit_world.imports.courier_plugin_types import (
    Delivery,
    Outcome,
    Outcome_Ok,
    PluginInfo,
    Subscription,
)


class Handler(exports.Handler):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="noop-py",
            version="0.1.0",
            subscriptions=[Subscription(queue="bench", topic="bench", events=["noop"])],
        )

    def handle(self, delivery: Delivery) -> Outcome:
        return Outcome_Ok()
