//! A loaded plugin version and the calls into it: each call takes a warm instance from the
//! plugin's pool (or instantiates one), runs under the plugin's deadline and memory limit, and
//! comes back as a [`CallReport`] with the outcome, the follow-up events, the outbound HTTP
//! requests and (when capturing) the log lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bindings::outcome_from_wit;
use crate::cache::LoadStats;
use crate::call_context::{CallBuffers, CallContext};
use crate::error::{CallError, Crash};
use crate::http_grants::HttpRequestRecord;
use crate::instance::{Instance, PluginPre, PluginShared, Request, Response};
use crate::limits::{Limits, within};
use crate::logs::{CallTags, LogLine};
use crate::model::{Delivery, FollowUp, Outcome, PluginInfo, PluginKind};
use crate::pool::InstancePool;
use crate::runtime::Runtime;

/// How long past its timeout a call blocked in a host function (for example awaiting an HTTP
/// response) is abandoned. A guest running WebAssembly is stopped by its epoch deadline first.
const BLOCKED_CALL_GRACE: Duration = Duration::from_millis(100);

/// One loaded version of a plugin. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    /// Keeps the engine and its epoch ticker alive.
    _runtime: Runtime,
    info: PluginInfo,
    kind: PluginKind,
    load_stats: LoadStats,
    shared: Arc<PluginShared>,
    pre: PluginPre,
    pool: InstancePool<Instance>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.inner.info)
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

/// Everything a call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport<T> {
    /// The outcome(s), or why there are none.
    pub result: Result<T, CallError>,
    /// Follow-up events the plugin published, in order. The host commits them only when the
    /// delivery ends `ok`.
    pub published: Vec<FollowUp>,
    /// Outbound HTTP requests the plugin made, granted or not.
    pub http_requests: Vec<HttpRequestRecord>,
    /// The plugin's log lines; empty unless the plugin logs in [`crate::LogMode::Capture`].
    pub logs: Vec<LogLine>,
    /// Which instance served the call.
    pub instance: InstanceUse,
    /// How long the call took, waiting for an instance included.
    pub duration: Duration,
}

/// Which instance served a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceUse {
    /// The instance was created for this call.
    pub fresh: bool,
    /// Calls the instance has served, this one included (`0`: instantiation failed).
    pub calls: u32,
}

impl Plugin {
    pub(crate) fn new(
        runtime: Runtime,
        info: PluginInfo,
        kind: PluginKind,
        load_stats: LoadStats,
        shared: Arc<PluginShared>,
        pre: PluginPre,
    ) -> Plugin {
        let pool = InstancePool::new(shared.limits.max_instances, shared.limits.max_uses);
        Plugin {
            inner: Arc::new(PluginInner {
                _runtime: runtime,
                info,
                kind,
                load_stats,
                shared,
                pre,
                pool,
            }),
        }
    }

    /// What the plugin said about itself when loaded.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// Handler or destination.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind
    }

    /// Whether this load compiled the component or read it from the cache.
    pub fn load_stats(&self) -> &LoadStats {
        &self.inner.load_stats
    }

    /// The name its log lines are tagged with.
    pub fn label(&self) -> &str {
        &self.inner.shared.label
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }

    /// How many warm instances wait for a call.
    pub fn idle_instances(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// Hands one delivery to the plugin. A destination receives it as a batch of one.
    pub async fn handle(&self, delivery: &Delivery) -> CallReport<Outcome> {
        let tags = CallTags {
            queue: Some(delivery.queue.clone()),
            message_id: Some(delivery.message.id),
            attempt: Some(delivery.attempt),
        };
        let request = match self.inner.kind {
            PluginKind::Handler => Request::Handle(delivery),
            PluginKind::Destination => Request::Deliver(std::slice::from_ref(delivery)),
        };
        self.call(tags, request, |response| match response {
            Response::Outcome(outcome) => Ok(outcome_from_wit(outcome)),
            Response::Outcomes(outcomes) => {
                let returned = outcomes.len();
                match <[_; 1]>::try_from(outcomes) {
                    Ok([outcome]) => Ok(outcome_from_wit(outcome)),
                    Err(_) => Err(CallError::OutcomeCount {
                        expected: 1,
                        returned,
                    }),
                }
            }
            Response::Info(_) => unreachable!("handle never asks for the plugin's info"),
        })
        .await
    }

    /// Hands a batch to a destination; the outcomes come in the batch's order. A destination
    /// answering another number of outcomes gives [`CallError::OutcomeCount`]; calling this on
    /// a handler gives [`CallError::WrongKind`].
    pub async fn deliver(&self, batch: &[Delivery]) -> CallReport<Vec<Outcome>> {
        if self.inner.kind != PluginKind::Destination {
            return CallReport::without_call(Err(CallError::WrongKind {
                kind: self.inner.kind,
            }));
        }
        if batch.is_empty() {
            return CallReport::without_call(Ok(Vec::new()));
        }
        let tags = CallTags {
            queue: Some(batch[0].queue.clone()),
            message_id: None,
            attempt: None,
        };
        let request = Request::Deliver(batch);
        let expected = batch.len();
        self.call(tags, request, |response| match response {
            Response::Outcomes(outcomes) if outcomes.len() == expected => {
                Ok(outcomes.into_iter().map(outcome_from_wit).collect())
            }
            Response::Outcomes(outcomes) => Err(CallError::OutcomeCount {
                expected,
                returned: outcomes.len(),
            }),
            Response::Outcome(_) | Response::Info(_) => {
                unreachable!("deliver asks a destination for outcomes")
            }
        })
        .await
    }

    async fn call<T>(
        &self,
        tags: CallTags,
        request: Request<'_>,
        convert: impl FnOnce(Response) -> Result<T, CallError>,
    ) -> CallReport<T> {
        let started = Instant::now();
        let inner = &*self.inner;
        let limit = inner.shared.limits.timeout;
        let (lease, idle) = inner.pool.acquire().await;
        // The call's context: the idle instance's, or a new one for the instance this call
        // creates. Kept here so that the report is built even when the call is abandoned.
        let call = match &idle {
            Some(instance) => instance.call_context().clone(),
            None => Arc::new(CallContext::new(inner.shared.label.clone())),
        };
        call.begin(tags, inner.shared.log_mode);
        let run = std::pin::pin!(async {
            let (mut instance, fresh) = match idle {
                Some(mut instance) => {
                    instance.begin(started);
                    (instance, false)
                }
                None => (
                    inner.pre.instantiate(&inner.shared, &call, started).await?,
                    true,
                ),
            };
            let response = instance.invoke(request).await;
            Ok::<_, Crash>((instance, fresh, response))
        });
        let ended = within(started + limit + BLOCKED_CALL_GRACE, run).await;
        // Finished before the instance goes back to the pool: the next call on it begins the
        // same context.
        let CallBuffers {
            logs,
            published,
            http_requests,
            ..
        } = call.finish();
        let (result, instance_use) = match ended {
            // The instance in the abandoned call is dropped with this frame, never reused.
            Err(_elapsed) => (
                Err(CallError::Crashed(Crash::Timeout { limit })),
                InstanceUse {
                    fresh: false,
                    calls: 0,
                },
            ),
            Ok(Err(crash)) => (
                Err(CallError::Crashed(crash)),
                InstanceUse {
                    fresh: true,
                    calls: 0,
                },
            ),
            Ok(Ok((instance, fresh, response))) => {
                let instance_use = InstanceUse {
                    fresh,
                    calls: instance.uses,
                };
                match response {
                    Ok(response) => {
                        inner.pool.release(instance, lease);
                        (convert(response), instance_use)
                    }
                    // A crashed instance is dropped here, never reused.
                    Err(crash) => (Err(CallError::Crashed(crash)), instance_use),
                }
            }
        };
        CallReport {
            result,
            published,
            http_requests,
            logs,
            instance: instance_use,
            duration: started.elapsed(),
        }
    }
}

impl<T> CallReport<T> {
    fn without_call(result: Result<T, CallError>) -> CallReport<T> {
        CallReport {
            result,
            published: Vec::new(),
            http_requests: Vec::new(),
            logs: Vec::new(),
            instance: InstanceUse {
                fresh: false,
                calls: 0,
            },
            duration: Duration::ZERO,
        }
    }
}
