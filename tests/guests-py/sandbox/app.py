"""A test guest that tries to escape the sandbox and reports what happened.

On each delivery it tries to read a file, read the environment and open a TCP connection
(to a loopback port given in the payload as `port`, 9 when absent), logs one line per attempt
(`file: ...`, `env: ...`, `socket: ...`, with `denied` or `ALLOWED`) and returns ok. The
Python runtime underneath imports much of WASI: the host grants none of it.

Every module is imported at the top: componentize-py snapshots the interpreter after importing
this module, and the standard library's files are not reachable at run time.
"""

import json
import os
import socket

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.courier_plugin_types import Delivery, Outcome, Outcome_Ok, PluginInfo, Subscription


def report(what: str, allowed: bool, detail: str) -> None:
    verdict = "ALLOWED" if allowed else "denied"
    host.log(host.Level.INFO, f"{what}: {verdict}: {detail}")


def try_file() -> None:
    try:
        with open("/etc/passwd", "rb") as f:
            data = f.read()
        report("file", True, f"read {len(data)} bytes of /etc/passwd")
    except OSError as err:
        report("file", False, f"{type(err).__name__}: {err}")


def try_env() -> None:
    names = sorted(os.environ.keys())
    if names:
        report("env", True, f"{len(names)} variables: {', '.join(names)}")
    else:
        report("env", False, "no variables")


def try_socket(port: int) -> None:
    # A plain connect to an address: `socket.create_connection` would first resolve the
    # host name through the `idna` codec, which is not imported at build time.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.connect(("127.0.0.1", port))
        report("socket", True, f"connected to 127.0.0.1:{port}")
    except OSError as err:
        report("socket", False, f"{type(err).__name__}: {err}")


class Handler(exports.Handler):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="sandbox-py",
            version="0.1.0",
            subscriptions=[Subscription(queue="sandbox-py", topic="sandbox", events=["probe"])],
        )

    def handle(self, delivery: Delivery) -> Outcome:
        payload = json.loads(delivery.message.payload)
        port = payload.get("port", 9) if isinstance(payload, dict) else 9
        try_file()
        try_env()
        try_socket(int(port))
        return Outcome_Ok()
