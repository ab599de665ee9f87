//! The paths of the guest components `build.rs` builds from source: the example plugins and
//! the misbehaving test guests, one constant each. Every path is absolute and the file
//! exists once this crate compiles.

/// The absolute path of a release component of the guest workspace, built by `build.rs`.
macro_rules! component {
    ($file:literal) => {
        concat!(env!("COURIER_GUEST_COMPONENTS_DIR"), "/", $file)
    };
}

/// `plugins/welcome-email`: handler; queue `emails` ← `user.created`; config `from`
/// (default `no-reply@example.com`); a payload without a string `email` → fatal
/// ``payload has no `email` field``; otherwise logs
/// `sending welcome email to EMAIL from FROM`, publishes `email.sent`
/// `{"to", "from", "user_message_id"}` and answers ok.
pub const WELCOME_EMAIL: &str = component!("welcome_email.wasm");

/// `plugins/flaky`: handler; queue `flaky` ← `flaky.event`; config `succeed_at` (default
/// 3): retry `attempt N of M` while the attempt is below it, then ok. A `succeed_at` that is
/// not a number → fatal naming the key and value.
pub const FLAKY: &str = component!("flaky.wasm");

/// `plugins/noop`: handler; queue `bench` ← `bench.noop`; answers ok at once, no logs.
pub const NOOP: &str = component!("noop.wasm");

/// `tests/guests/spin-loop`: handler; queue `spin` ← `spin.loop`, `spin.sleep`; `handle`
/// never returns: it loops (`loop`) or sleeps an hour in a host function (`sleep`).
pub const SPIN_LOOP: &str = component!("spin_loop.wasm");

/// `tests/guests/memory-bomb`: handler; queue `bomb` ← `bomb.allocate`; allocates and
/// touches 1 MiB after 1 MiB until stopped.
pub const MEMORY_BOMB: &str = component!("memory_bomb.wasm");

/// `tests/guests/trap`: handler; queue `trap` ← `trap.event`; panics (a trap) when the
/// payload is `{"panic": true}`, answers ok for any other object (`{}` included).
pub const TRAP: &str = component!("trap.wasm");

/// `tests/guests/http-call`: handler; queue `http` ← `http.call`; sends one request to
/// config `url` (method: config `method`, default `GET`; a `POST` sends the payload with
/// `content-type: application/json`; timeout 5 s). On a response of any status: logs
/// `METHOD URL -> STATUS BODY` and answers ok. With no response: retry with the error, whose
/// text for a not-granted host is ``request to URL denied: the host `HOST[:PORT]` is not
/// granted to this plugin (grant it in the plugin's sidecar file)``. No `url` → fatal
/// ``config `url` is not set``.
pub const HTTP_CALL: &str = component!("http_call.wasm");

/// `tests/guests/echo-destination`: destination; queue `echo` ← `echo.event`; logs
/// `batch of N deliveries` once per call; per delivery: fatal
/// `message ID asked to fail` when the payload has `"fail": true`, ok otherwise.
pub const ECHO_DESTINATION: &str = component!("echo_destination.wasm");

/// `tests/guests/stdout`: handler; queue `stdout` ← `stdout.print`; prints
/// `stdout line for ID` to stdout and `stderr line for ID` to stderr, then ok.
pub const STDOUT: &str = component!("stdout.wasm");

/// `tests/guests/wrong-world`: a `wasi:cli/command` component (`fn main`), valid but not a
/// Courier plugin.
pub const WRONG_WORLD: &str = component!("wrong-world.wasm");

/// `tests/guests/other-version`: a handler exporting `courier:plugin/handler@0.2.0`, a
/// contract version the host does not implement.
pub const OTHER_VERSION: &str = component!("other_version.wasm");

/// `tests/guests/sdk-probe`: handler `sdk-probe` version `9.9.9`; queues `probe` ←
/// `probe.order` and `probe-audit` ← `audit.order`, `audit.refund`. Payload
/// `{"sku": string, "quantity": u32, "action"?: string}`; a payload of another shape →
/// fatal ``payload of NAME (message ID) does not decode as Order: ...``. See the crate's
/// documentation for the actions (`retry`, `fatal`, `bad-publish`, `levels`,
/// `publish-then-retry`).
pub const SDK_PROBE: &str = component!("sdk_probe.wasm");

/// `plugins/webhook`: destination; queue `webhook` ← `email.sent`; config `url`, `secret`
/// (`whsec_...`, several separated by spaces or commas), `mode` (`single` | `batch`),
/// `timeout_ms`. POSTs each message (or the batch as a JSON array) signed with Standard
/// Webhooks; 2xx ok, 408/425/429/5xx retry after `Retry-After`, 410 and other 4xx fatal,
/// 3xx and connection failures retry, a host not granted fatal. See its README.
pub const WEBHOOK: &str = component!("webhook.wasm");

/// The absolute path of a component written in Python, JavaScript or C, built by
/// `build.rs` with the scripts in `sdk/` (see `build_foreign.rs`).
macro_rules! foreign_component {
    ($file:literal) => {
        concat!(env!("COURIER_FOREIGN_COMPONENTS_DIR"), "/", $file)
    };
}

/// `plugins/welcome-email-py`: [`WELCOME_EMAIL`]'s contract in Python (componentize-py),
/// named `welcome-email-py`.
pub const WELCOME_EMAIL_PY: &str = foreign_component!("welcome_email_py.wasm");

/// `plugins/welcome-email-js`: [`WELCOME_EMAIL`]'s contract in JavaScript
/// (componentize-js), named `welcome-email-js`.
pub const WELCOME_EMAIL_JS: &str = foreign_component!("welcome_email_js.wasm");

/// `plugins/welcome-email-c`: [`WELCOME_EMAIL`]'s contract in C (clang, wasi-libc,
/// wit-bindgen), named `welcome-email-c`.
pub const WELCOME_EMAIL_C: &str = foreign_component!("welcome_email_c.wasm");

/// `plugins/noop-py`: [`NOOP`] in Python, named `noop-py`: ok at once, for every payload.
pub const NOOP_PY: &str = foreign_component!("noop_py.wasm");

/// `plugins/noop-js`: [`NOOP`] in JavaScript, named `noop-js`: ok at once, for every
/// payload.
pub const NOOP_JS: &str = foreign_component!("noop_js.wasm");

/// `tests/guests-py/sandbox`: handler; queue `sandbox-py` ← `sandbox.probe`. Tries to read
/// `/etc/passwd`, the environment and a TCP connection to 127.0.0.1:`port` (payload field,
/// default 9); logs one line per attempt, `file: ...`, `env: ...`, `socket: ...`, each
/// `denied: DETAIL` or `ALLOWED: DETAIL`; answers ok.
pub const SANDBOX_PY: &str = foreign_component!("sandbox_py.wasm");

/// `tests/guests-js/sandbox`: [`SANDBOX_PY`] in JavaScript (queue `sandbox-js`), through
/// the WASI interfaces its world imports (`wasi:filesystem/preopens`,
/// `wasi:cli/environment`, `wasi:sockets/tcp`).
pub const SANDBOX_JS: &str = foreign_component!("sandbox_js.wasm");

/// `tests/guests-js/promises`: handler, named `promises-js`; queue `promises-js` ←
/// `promise.ask`. Answers as the payload asks, `{"answer": "ok" | "retry" | "fatal" |
/// "throw" | "ok-then-fatal", "async": bool}`: `retry` with `asked to retry` and a delay of
/// 1,500 ms, `fatal` with `asked to fail`, `throw` by throwing, `ok-then-fatal` with ok and a
/// promise job that then turns the returned object into `fatal` (`changed after returning`).
/// With `async` it answers through a promise that settles two job-queue turns later, after
/// publishing `promise.settled` (`{}`).
pub const PROMISES_JS: &str = foreign_component!("promises_js.wasm");

/// `tests/guests-js/echo-destination`: [`ECHO_DESTINATION`] in JavaScript (named
/// `echo-destination-js`): ok, or, for the payload `{"describe": true}`, fatal with every field
/// of the delivery in the same words.
pub const ECHO_DESTINATION_JS: &str = foreign_component!("echo_destination_js.wasm");

/// Every component above, by the name of its crate.
pub fn all() -> &'static [(&'static str, &'static str)] {
    &[
        ("welcome-email", WELCOME_EMAIL),
        ("flaky", FLAKY),
        ("noop", NOOP),
        ("spin-loop", SPIN_LOOP),
        ("memory-bomb", MEMORY_BOMB),
        ("trap", TRAP),
        ("http-call", HTTP_CALL),
        ("echo-destination", ECHO_DESTINATION),
        ("stdout", STDOUT),
        ("wrong-world", WRONG_WORLD),
        ("other-version", OTHER_VERSION),
        ("sdk-probe", SDK_PROBE),
        ("webhook", WEBHOOK),
        ("welcome-email-py", WELCOME_EMAIL_PY),
        ("welcome-email-js", WELCOME_EMAIL_JS),
        ("welcome-email-c", WELCOME_EMAIL_C),
        ("noop-py", NOOP_PY),
        ("noop-js", NOOP_JS),
        ("sandbox-py", SANDBOX_PY),
        ("sandbox-js", SANDBOX_JS),
        ("promises-js", PROMISES_JS),
        ("echo-destination-js", ECHO_DESTINATION_JS),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_component_was_built() {
        for (name, path) in super::all() {
            let bytes = std::fs::read(path)
                .unwrap_or_else(|error| panic!("{name}: cannot read {path}: {error}"));
            // A component's preamble: the magic, then version 0x0d and layer 1.
            assert_eq!(
                bytes.get(..8),
                Some(&b"\0asm\x0d\0\x01\0"[..]),
                "{name}: {path} is not a component"
            );
        }
    }
}
