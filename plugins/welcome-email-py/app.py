"""welcome-email-py: sends a welcome email when a user is created.

The Python twin of the Rust `welcome-email` plugin, with the same contract: it serves queue
`emails` for `user.created`, reads the sender from config `from`, fails for good on a payload
without an `email` field, and on success publishes a follow-up `email.sent`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.courier_plugin_types import (
    Delivery,
    Outcome,
    Outcome_Fatal,
    Outcome_Ok,
    PluginInfo,
    Subscription,
)

DEFAULT_FROM = "no-reply@example.com"


class Handler(exports.Handler):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="welcome-email-py",
            version="0.1.0",
            subscriptions=[Subscription(queue="emails", topic="user", events=["created"])],
        )

    def handle(self, delivery: Delivery) -> Outcome:
        message = delivery.message
        try:
            payload = json.loads(message.payload)
        except ValueError as err:
            return Outcome_Fatal(f"payload is not JSON: {err}")
        email = payload.get("email") if isinstance(payload, dict) else None
        if not isinstance(email, str):
            return Outcome_Fatal("payload has no `email` field")

        sender = host.config("from")
        if sender is None:
            sender = DEFAULT_FROM
        host.log(host.Level.INFO, f"sending welcome email to {email} from {sender}")

        follow_up = {"to": email, "from": sender, "user_message_id": message.id}
        try:
            host.publish(
                "email.sent",
                json.dumps(follow_up).encode(),
                host.PublishOptions(id=None, deliver_at=None, headers=[]),
            )
        except Err as err:
            # The host refused the event: retrying would not change its mind.
            return Outcome_Fatal(f"cannot publish email.sent: {err.value}")
        return Outcome_Ok()
