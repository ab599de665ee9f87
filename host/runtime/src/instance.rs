//! One instance of a plugin: its `Store` (WASI context, HTTP hooks, memory limiter, deadline)
//! and its typed exports, and how a call on it runs and fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::{
    DestinationPlugin, DestinationPluginPre, HandlerPlugin, HandlerPluginPre, WitParts,
    delivery_to_wit, wit,
};
use crate::call_context::CallContext;
use crate::error::Crash;
use crate::http_grants::{HttpHooks, HttpPolicy};
use crate::limits::{Deadline, Limits, MemoryLimiter};
use crate::logs::{LogLevel, LogMode, LogSource};
use crate::model::Delivery;
use crate::pool::Reusable;
use crate::stdio::GuestOutput;

/// What all instances of one loaded plugin share.
pub(crate) struct PluginShared {
    /// The name log lines are tagged with.
    pub label: Arc<str>,
    pub config: BTreeMap<String, String>,
    pub http: Arc<HttpPolicy>,
    pub limits: Limits,
    pub log_mode: LogMode,
}

/// The `T` of every plugin `Store`.
pub(crate) struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http_hooks: HttpHooks,
    limiter: MemoryLimiter,
    deadline: Deadline,
    /// The instance's call context, shared with its output streams and HTTP hooks. Host
    /// imports only run during a call; should one run outside, its lines still reach `tracing`.
    pub call: Arc<CallContext>,
    pub shared: Arc<PluginShared>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// A component pre-instantiated against the host's linker, typed by its world.
#[derive(Clone)]
pub(crate) enum PluginPre {
    Handler(HandlerPluginPre<InstanceState>),
    Destination(DestinationPluginPre<InstanceState>),
}

enum Exports {
    Handler(HandlerPlugin),
    Destination(DestinationPlugin),
}

/// A call into a plugin's exports.
pub(crate) enum Request<'a> {
    Describe,
    Handle(&'a Delivery),
    Deliver(&'a [Delivery]),
}

/// What the plugin answered to a [`Request`].
pub(crate) enum Response {
    Info(wit::PluginInfo),
    Outcome(wit::Outcome),
    Outcomes(Vec<wit::Outcome>),
}

/// A live instance with its store.
pub(crate) struct Instance {
    store: Store<InstanceState>,
    exports: Exports,
    /// Calls served so far.
    pub uses: u32,
}

impl PluginPre {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            PluginPre::Handler(pre) => pre.engine(),
            PluginPre::Destination(pre) => pre.engine(),
        }
    }

    /// Creates a store whose call context is `call` (on which a call has begun) and
    /// instantiates the plugin in it, within the plugin's limits from `started`. On failure the
    /// store is dropped and the failure classified.
    pub async fn instantiate(
        &self,
        shared: &Arc<PluginShared>,
        call: &Arc<CallContext>,
        started: Instant,
    ) -> Result<Instance, Crash> {
        let mut store = new_store(self.engine(), shared, call, started);
        begin_call(&mut store, started);
        let exports = match self {
            PluginPre::Handler(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Handler),
            PluginPre::Destination(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Destination),
        };
        match exports {
            Ok(exports) => Ok(Instance {
                store,
                exports,
                uses: 0,
            }),
            Err(error) => Err(classify(&mut store, &error)),
        }
    }
}

impl Reusable for Instance {
    fn uses(&self) -> u32 {
        self.uses
    }
}

impl Instance {
    /// The instance's call context.
    pub fn call_context(&self) -> &Arc<CallContext> {
        &self.store.data().call
    }

    /// Starts a call that began at `started` (its context begun by the caller): arms the
    /// deadline (the plugin's timeout after `started`) and the memory record.
    pub fn begin(&mut self, started: Instant) {
        begin_call(&mut self.store, started);
    }

    /// Runs `request`. The caller must have called [`Self::begin`].
    pub async fn invoke(&mut self, request: Request<'_>) -> Result<Response, Crash> {
        self.uses += 1;
        let store = &mut self.store;
        let result = match (&self.exports, request) {
            (Exports::Handler(plugin), Request::Describe) => plugin
                .courier_plugin_handler()
                .call_describe(&mut *store)
                .await
                .map(Response::Info),
            (Exports::Handler(plugin), Request::Handle(delivery)) => {
                let parts = WitParts::of(delivery);
                plugin
                    .courier_plugin_handler()
                    .call_handle(&mut *store, delivery_to_wit(delivery, &parts))
                    .await
                    .map(Response::Outcome)
            }
            (Exports::Destination(plugin), Request::Describe) => plugin
                .courier_plugin_destination()
                .call_describe(&mut *store)
                .await
                .map(Response::Info),
            (Exports::Destination(plugin), Request::Deliver(batch)) => {
                let parts: Vec<_> = batch.iter().map(WitParts::of).collect();
                let batch: Vec<_> = batch
                    .iter()
                    .zip(&parts)
                    .map(|(delivery, parts)| delivery_to_wit(delivery, parts))
                    .collect();
                plugin
                    .courier_plugin_destination()
                    .call_deliver(&mut *store, &batch)
                    .await
                    .map(Response::Outcomes)
            }
            (Exports::Handler(_), Request::Deliver(_))
            | (Exports::Destination(_), Request::Handle(_)) => {
                unreachable!("the plugin module routes requests by kind")
            }
        };
        result.map_err(|error| classify(store, &error))
    }
}

fn new_store(
    engine: &wasmtime::Engine,
    shared: &Arc<PluginShared>,
    call: &Arc<CallContext>,
    started: Instant,
) -> Store<InstanceState> {
    let output = |source| GuestOutput {
        call: call.clone(),
        source,
    };
    // Deny by default: no preopened directories, no environment, no arguments, no sockets
    // (outbound HTTP goes through `wasi:http` and its grants).
    let wasi = WasiCtx::builder()
        .stdout(output(LogSource::Stdout))
        .stderr(output(LogSource::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = InstanceState {
        wasi,
        table: ResourceTable::new(),
        http_ctx: WasiHttpCtx::new(),
        http_hooks: HttpHooks {
            policy: shared.http.clone(),
            call: call.clone(),
        },
        limiter: MemoryLimiter::new(shared.limits.memory_bytes),
        deadline: Deadline::at(started + shared.limits.timeout),
        call: call.clone(),
        shared: shared.clone(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Every epoch tick during a call: trap past the deadline, otherwise yield to the async
    // executor so a busy guest never monopolises a worker thread.
    store.epoch_deadline_callback(|mut context| {
        let deadline = &mut context.data_mut().deadline;
        if std::time::Instant::now() >= deadline.at {
            deadline.expired = true;
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

fn begin_call(store: &mut Store<InstanceState>, started: Instant) {
    let state = store.data_mut();
    state.deadline = Deadline::at(started + state.shared.limits.timeout);
    state.limiter.denied = false;
    store.set_epoch_deadline(1);
}

/// Turns a failed call into the crash it was: past the deadline → timeout; after a denied
/// memory growth → memory kill; otherwise a trap with its message (the full error, with the
/// WebAssembly backtrace, goes to the call's log as a host line).
fn classify(store: &mut Store<InstanceState>, error: &wasmtime::Error) -> Crash {
    let state = store.data_mut();
    if state.deadline.expired {
        return Crash::Timeout {
            limit: state.shared.limits.timeout,
        };
    }
    if state.limiter.denied {
        return Crash::Memory {
            limit_bytes: state.shared.limits.memory_bytes,
        };
    }
    let message = error.root_cause().to_string();
    let message = message
        .strip_prefix("wasm trap: ")
        .unwrap_or(&message)
        .to_string();
    // The error's context holds the WebAssembly backtrace.
    let context: Vec<String> = error
        .chain()
        .take_while(|cause| cause.source().is_some())
        .map(|cause| cause.to_string())
        .collect();
    state.call.log(
        LogLevel::Error,
        LogSource::Host,
        format!("the plugin trapped: {message}\n{}", context.join("\n")),
    );
    Crash::Trap { message }
}
