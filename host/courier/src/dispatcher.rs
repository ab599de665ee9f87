//! The dispatcher: wakes up on the outbox's notifications (and its interval poll), claims
//! batches of deliveries for the queues and event names the active plugins serve, hands them
//! to the plugins within each plugin's concurrency limit, and records the outcomes in batches.
//!
//! Per active plugin version there is a claim loop following the queues' wake-ups (and a
//! helper that joins it while claims come back full) and `concurrency` workers sharing a
//! bounded buffer of claimed deliveries; every worker sends its finished deliveries to a few
//! completers, which write them to the outbox in batches. A new version of a plugin gets new
//! workers; the old version's workers finish what they already claimed, then stop.
//!
//! Invariants: no plugin code runs while a transaction is open (claims and completions are
//! separate statements); an outcome counts as done only once the outbox recorded it; a
//! delivery whose lease could run out before its call finishes is not started.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use courier_outbox::{Completion, DeliveryKey, Failure, Outbox, OutboxError, Wakeups};
use courier_runtime::{CallReport, FollowUp, Outcome, PluginKind};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, PluginQueueMetrics};
use crate::outbox_bridge::{self, ClaimSet, Claimed, Finished};
use crate::registry::{ActiveSet, PluginVersion};

/// How the dispatcher claims and completes.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// The most deliveries claimed in one statement.
    pub claim_batch_size: u32,
    /// Claim loops per plugin version (`FOR UPDATE SKIP LOCKED` keeps their claims apart).
    /// The first follows the queues' wake-ups; the others join in only while a backlog
    /// keeps the claims full, so a trickle of messages costs one claim each, not several.
    pub claimers_per_plugin: usize,
    /// The shortest lease a claim takes. A plugin whose timeout needs more gets three times
    /// its timeout.
    pub lease: Duration,
    /// How often every queue is polled when no notification arrives.
    pub poll_interval: Duration,
    /// How many tasks write outcomes to the outbox concurrently.
    pub completers: usize,
    /// The most outcomes written in one batch.
    pub completion_batch_size: usize,
    /// How long a completer waits for more outcomes after the first of a batch before
    /// writing it (less when the batch fills): a few milliseconds more before an outcome is
    /// recorded buys far fewer, larger writes when deliveries trickle in.
    pub completion_linger: Duration,
    /// How often expired leases are rescued.
    pub housekeeping_interval: Duration,
    /// Called with each delivery just before its plugin call starts (`courier bench`
    /// measures publish → handler start with it).
    pub call_probe: Option<CallProbe>,
}

/// A function the dispatcher calls with each delivery just before handing it to its plugin.
/// It runs on the delivery path: it must be quick and must not block.
#[derive(Clone)]
pub struct CallProbe(Arc<dyn Fn(&Claimed) + Send + Sync>);

impl CallProbe {
    /// A probe calling `observe`.
    pub fn new(observe: impl Fn(&Claimed) + Send + Sync + 'static) -> CallProbe {
        CallProbe(Arc::new(observe))
    }
}

impl std::fmt::Debug for CallProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallProbe")
    }
}

impl Default for DispatcherOptions {
    fn default() -> DispatcherOptions {
        DispatcherOptions {
            claim_batch_size: 4000,
            claimers_per_plugin: 2,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            completers: 2,
            completion_batch_size: 2000,
            completion_linger: Duration::from_millis(5),
            housekeeping_interval: Duration::from_secs(5),
            call_probe: None,
        }
    }
}

/// A running dispatcher.
pub struct Dispatcher {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<Vec<PluginWorkers>>,
    completers: Vec<JoinHandle<()>>,
    housekeeping: JoinHandle<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

struct Shared {
    outbox: Outbox,
    wakeups: Wakeups,
    metrics: Metrics,
    options: DispatcherOptions,
    /// Set on shutdown: claimed deliveries not started yet are released instead of run.
    draining: AtomicBool,
    /// Deliveries handed to a call that was abandoned at the end of the shutdown grace
    /// period: released at the end.
    orphans: std::sync::Mutex<Vec<DeliveryKey>>,
}

impl Dispatcher {
    /// Starts the wake-ups (a `LISTEN` connection and the interval poll) and dispatching for
    /// the active plugins `active` reports, following its changes.
    pub async fn start(
        outbox: Outbox,
        active: watch::Receiver<ActiveSet>,
        metrics: Metrics,
        options: DispatcherOptions,
    ) -> Result<Dispatcher, OutboxError> {
        let wakeups = Wakeups::start(&outbox, options.poll_interval).await?;
        let shared = Arc::new(Shared {
            outbox,
            wakeups,
            metrics,
            options,
            draining: AtomicBool::new(false),
            orphans: std::sync::Mutex::new(Vec::new()),
        });
        let (finished_sender, finished) =
            mpsc::channel::<Finished>(shared.options.completion_batch_size.max(1) * 4);
        let finished = Arc::new(Mutex::new(finished));
        let completers = (0..shared.options.completers.max(1))
            .map(|_| tokio::spawn(complete_loop(shared.clone(), finished.clone())))
            .collect();
        let (stop, stopped) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            shared.clone(),
            active,
            finished_sender,
            stopped.clone(),
        ));
        let housekeeping = tokio::spawn(housekeeping_loop(shared.clone(), stopped));
        Ok(Dispatcher {
            shared,
            stop,
            supervisor,
            completers,
            housekeeping,
        })
    }

    /// Stops claiming, lets the calls in progress finish for at most `grace` and records
    /// their outcomes, then releases every delivery claimed but not finished.
    pub async fn shutdown(self, grace: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        self.housekeeping.abort();
        let mut workers = match self.supervisor.await {
            Ok(workers) => workers,
            Err(error) => {
                tracing::error!(%error, "the dispatcher's supervisor failed");
                Vec::new()
            }
        };
        let deadline = tokio::time::Instant::now() + grace;
        for set in &workers {
            set.stop_claiming();
        }
        let mut unfinished = Vec::new();
        for set in &mut workers {
            for mut task in std::mem::take(&mut set.tasks) {
                if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                    task.abort();
                    // An aborted task is dropped once awaited: its in-flight deliveries
                    // become orphans.
                    let _ = task.await;
                }
            }
            let mut buffer = set.buffer.lock().await;
            while let Ok(claimed) = buffer.try_recv() {
                unfinished.push(claimed.key);
            }
        }
        drop(workers);
        // Every sender of finished deliveries is gone now: the completers drain and stop.
        for completer in self.completers {
            let _ = completer.await;
        }
        unfinished.append(
            &mut self
                .shared
                .orphans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !unfinished.is_empty() {
            match outbox_bridge::release(&self.shared.outbox, unfinished).await {
                Ok(released) => tracing::info!(
                    released,
                    "released deliveries that did not finish within the grace period"
                ),
                Err(error) => tracing::error!(
                    %error,
                    "cannot release unfinished deliveries; their leases expire by themselves"
                ),
            }
        }
    }
}

/// Starts and stops the workers of each plugin version as the active set changes.
async fn supervise(
    shared: Arc<Shared>,
    mut active: watch::Receiver<ActiveSet>,
    finished: mpsc::Sender<Finished>,
    mut stopped: watch::Receiver<bool>,
) -> Vec<PluginWorkers> {
    let mut running: HashMap<String, PluginWorkers> = HashMap::new();
    let mut retired: Vec<PluginWorkers> = Vec::new();
    loop {
        let snapshot = active.borrow_and_update().clone();
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            let still_active = snapshot
                .get(&name)
                .is_some_and(|version| version.generation == running[&name].version.generation);
            if !still_active {
                let set = running.remove(&name).expect("listed above");
                set.stop_claiming();
                retired.push(set);
            }
        }
        for (name, version) in snapshot.iter() {
            if !running.contains_key(name) {
                let set = PluginWorkers::start(shared.clone(), version.clone(), finished.clone());
                running.insert(name.clone(), set);
            }
        }
        retired.retain(|set| !set.is_finished());
        tokio::select! {
            changed = active.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = stopped.changed() => break,
        }
    }
    running.into_values().chain(retired).collect()
}

/// The tasks serving one plugin version.
struct PluginWorkers {
    version: Arc<PluginVersion>,
    stop: watch::Sender<bool>,
    /// Claimed deliveries waiting for a worker.
    buffer: Arc<Mutex<mpsc::Receiver<Claimed>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl PluginWorkers {
    fn start(
        shared: Arc<Shared>,
        version: Arc<PluginVersion>,
        finished: mpsc::Sender<Finished>,
    ) -> PluginWorkers {
        let limits = version.sidecar.limits;
        let concurrency = limits.concurrency.max(1) as usize;
        // Room for two claims, so that the next claim runs while the workers still have a
        // whole batch to get through.
        let capacity = (shared.options.claim_batch_size as usize * 2).max(concurrency * 2);
        let (claimed_sender, claimed) = mpsc::channel::<Claimed>(capacity);
        let claimed = Arc::new(Mutex::new(claimed));
        let (stop, stopped) = watch::channel(false);
        let pace = Arc::new(Pace::new(
            concurrency,
            capacity,
            lease_for(&shared.options, &version),
        ));
        let handles = Arc::new(MetricHandles::new(&shared.metrics, &version));

        let mut tasks = Vec::with_capacity(concurrency + 1);
        let backlog = Arc::new(Notify::new());
        for index in 0..shared.options.claimers_per_plugin.max(1) {
            let role = if index == 0 {
                ClaimerRole::Leader
            } else {
                ClaimerRole::Helper
            };
            tasks.push(tokio::spawn(claim_loop(
                shared.clone(),
                version.clone(),
                claimed_sender.clone(),
                stopped.clone(),
                pace.clone(),
                (role, backlog.clone()),
            )));
        }
        drop(claimed_sender);
        for _ in 0..concurrency {
            let worker = Worker {
                shared: shared.clone(),
                version: version.clone(),
                claimed: claimed.clone(),
                finished: finished.clone(),
                pace: pace.clone(),
                metrics: handles.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        tracing::debug!(
            plugin = %version.name,
            generation = version.generation,
            concurrency,
            "plugin workers started"
        );
        PluginWorkers {
            version,
            stop,
            buffer: claimed,
            tasks,
        }
    }

    fn stop_claiming(&self) {
        let _ = self.stop.send(true);
    }

    fn is_finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }
}

/// The lease a claim for `version` takes: long enough for a call to finish after waiting in
/// the buffer.
fn lease_for(options: &DispatcherOptions, version: &PluginVersion) -> Duration {
    options.lease.max(version.sidecar.limits.timeout * 3)
}

/// Bounds how many claimed deliveries wait in a plugin's buffer, from how long its calls
/// take: a delivery should start well within its lease.
struct Pace {
    concurrency: usize,
    capacity: usize,
    lease: Duration,
    /// Mean call duration (exponentially weighted), in nanoseconds; 0 = not measured yet.
    mean_call_nanos: AtomicU64,
    /// Signalled when the buffer has room again.
    room: Notify,
    /// Held by a claim loop while it decides how much room to claim for and reserves it.
    claiming: std::sync::Mutex<()>,
}

impl Pace {
    fn new(concurrency: usize, capacity: usize, lease: Duration) -> Pace {
        Pace {
            concurrency,
            capacity,
            lease,
            mean_call_nanos: AtomicU64::new(0),
            room: Notify::new(),
            claiming: std::sync::Mutex::new(()),
        }
    }

    /// How many deliveries may wait in the buffer: what the workers get through in a
    /// quarter of the lease, at least one round of calls, at most the buffer.
    fn buffer_target(&self) -> usize {
        let mean = self.mean_call_nanos.load(Ordering::Relaxed);
        if mean == 0 {
            return (self.concurrency * 4).min(self.capacity);
        }
        let quarter_lease = u64::try_from(self.lease.as_nanos() / 4).unwrap_or(u64::MAX);
        let per_worker = usize::try_from(quarter_lease / mean.max(1)).unwrap_or(usize::MAX);
        per_worker
            .saturating_mul(self.concurrency)
            .clamp(self.concurrency, self.capacity)
    }

    fn record_call(&self, duration: Duration) {
        let sample = u64::try_from(duration.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let old = self.mean_call_nanos.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old / 8 * 7 + sample / 8
        };
        self.mean_call_nanos.store(new.max(1), Ordering::Relaxed);
    }
}

/// Claims deliveries for one plugin version while there is backlog and room in its buffer,
/// then waits for a wake-up of one of its queues or the stop signal.
async fn claim_loop(
    shared: Arc<Shared>,
    version: Arc<PluginVersion>,
    buffer: mpsc::Sender<Claimed>,
    mut stopped: watch::Receiver<bool>,
    pace: Arc<Pace>,
    (role, backlog): (ClaimerRole, Arc<Notify>),
) {
    let set = ClaimSet::new(&version.subscriptions);
    let signals: Vec<Arc<Notify>> = match role {
        ClaimerRole::Leader => set.queues().map(|q| shared.wakeups.queue(q)).collect(),
        ClaimerRole::Helper => vec![backlog.clone()],
    };
    let lease = lease_for(&shared.options, &version);
    let batch = shared.options.claim_batch_size as usize;
    let mut failures = 0u32;
    'serving: loop {
        // Drain the backlog while there is room.
        loop {
            if *stopped.borrow() {
                break 'serving;
            }
            // Reserve the room in the buffer before claiming, so that the other claim loop
            // of this plugin counts it as taken.
            let permits = {
                let _turn = pace
                    .claiming
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let buffered = pace.capacity - buffer.capacity();
                let target = pace.buffer_target();
                let room = target.saturating_sub(buffered).min(batch);
                // Wait for a worthwhile amount of room rather than claiming a few at a time.
                if room == 0 || (buffered > 0 && room < target / 4) {
                    None
                } else {
                    match buffer.try_reserve_many(room) {
                        Ok(permits) => Some(permits),
                        Err(mpsc::error::TrySendError::Full(())) => None,
                        Err(mpsc::error::TrySendError::Closed(())) => break 'serving,
                    }
                }
            };
            let Some(permits) = permits else {
                // The poll interval bounds the wait, so no claim loop misses its turn for good.
                tokio::select! {
                    () = pace.room.notified() => continue,
                    () = tokio::time::sleep(shared.options.poll_interval) => continue,
                    _ = stopped.changed() => break 'serving,
                }
            };
            let room = permits.len();
            let claimed = match outbox_bridge::claim(&shared.outbox, &set, room, lease).await {
                Ok(claimed) => {
                    failures = 0;
                    claimed
                }
                Err(error) => {
                    failures += 1;
                    tracing::error!(plugin = %version.name, %error, "claiming deliveries failed");
                    let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        _ = stopped.changed() => break 'serving,
                    }
                }
            };
            let count = claimed.len();
            if count == room {
                // A full claim: there is a backlog, which the helpers help drain.
                backlog.notify_waiters();
            }
            // Unused permits return to the buffer when dropped.
            for (permit, delivery) in permits.zip(claimed) {
                permit.send(delivery);
            }
            if count < room {
                break;
            }
        }
        tokio::select! {
            () = any_notified(&signals) => {}
            _ = stopped.changed() => break,
        }
    }
    // Dropping the sender lets the workers drain the buffer, then stop.
}

/// What starts a claim loop's claims: the leader follows its queues' wake-ups; a helper
/// follows the leader's full claims (a backlog).
#[derive(Debug, Clone, Copy)]
enum ClaimerRole {
    Leader,
    Helper,
}

/// Resolves when one of `signals` is notified.
async fn any_notified(signals: &[Arc<Notify>]) {
    match signals {
        [] => std::future::pending().await,
        [only] => only.notified().await,
        many => {
            let waits = many.iter().map(|signal| Box::pin(signal.notified()));
            futures::future::select_all(waits).await;
        }
    }
}

/// The metric handles of one plugin version, per queue.
struct MetricHandles {
    by_queue: HashMap<String, Arc<PluginQueueMetrics>>,
    metrics: Metrics,
    plugin: String,
}

impl MetricHandles {
    fn new(metrics: &Metrics, version: &PluginVersion) -> MetricHandles {
        let by_queue = version
            .subscriptions
            .iter()
            .map(|s| {
                let handles = metrics.for_plugin_queue(&version.name, &s.queue);
                (s.queue.clone(), Arc::new(handles))
            })
            .collect();
        MetricHandles {
            by_queue,
            metrics: metrics.clone(),
            plugin: version.name.clone(),
        }
    }

    fn for_queue(&self, queue: &str) -> Arc<PluginQueueMetrics> {
        match self.by_queue.get(queue) {
            Some(handles) => handles.clone(),
            None => Arc::new(self.metrics.for_plugin_queue(&self.plugin, queue)),
        }
    }
}

/// The most deliveries a handler worker takes from the buffer at once.
const HANDLER_DELIVERIES_PER_TURN: usize = 8;

/// One of a plugin version's concurrent callers.
struct Worker {
    shared: Arc<Shared>,
    version: Arc<PluginVersion>,
    claimed: Arc<Mutex<mpsc::Receiver<Claimed>>>,
    finished: mpsc::Sender<Finished>,
    pace: Arc<Pace>,
    metrics: Arc<MetricHandles>,
}

impl Worker {
    async fn run(self) {
        // A handler worker takes a few deliveries per turn (and calls the plugin once per
        // delivery) so that the workers do not contend for the buffer on every message.
        let batch_size = match self.version.plugin.kind() {
            PluginKind::Handler => HANDLER_DELIVERIES_PER_TURN,
            PluginKind::Destination => self.version.sidecar.limits.batch_size.max(1) as usize,
        };
        let mut batch: Vec<Claimed> = Vec::with_capacity(batch_size);
        loop {
            let received = {
                let mut claimed = self.claimed.lock().await;
                let limit = match self.version.plugin.kind() {
                    // Take a fair share of what waits, so that no worker idles while another
                    // holds several deliveries.
                    PluginKind::Handler => {
                        (claimed.len() / self.pace.concurrency).clamp(1, batch_size)
                    }
                    PluginKind::Destination => batch_size,
                };
                let received = claimed.recv_many(&mut batch, limit).await;
                if claimed.len() <= self.pace.buffer_target() / 2 {
                    // Every claim loop waiting for room (the leader and its helper), or the
                    // next one to wait.
                    self.pace.room.notify_waiters();
                    self.pace.room.notify_one();
                }
                received
            };
            if received == 0 {
                return;
            }
            let runnable = self.set_aside_unstartable(&mut batch).await;
            if runnable.is_empty() {
                continue;
            }
            match self.version.plugin.kind() {
                PluginKind::Handler => {
                    for claimed in runnable {
                        if let Some(probe) = &self.shared.options.call_probe {
                            (probe.0)(&claimed);
                        }
                        let slot = InFlight::new(vec![claimed], &self.shared);
                        let report = self.version.plugin.handle(&slot.items[0].delivery).await;
                        self.pace.record_call(report.duration);
                        let claimed = slot.take().pop().expect("one delivery in the slot");
                        self.finish_one(claimed, report).await;
                    }
                }
                PluginKind::Destination => {
                    let deliveries: Vec<_> = runnable
                        .iter()
                        .map(|claimed| claimed.delivery.clone())
                        .collect();
                    if let Some(probe) = &self.shared.options.call_probe {
                        runnable.iter().for_each(|claimed| (probe.0)(claimed));
                    }
                    let slot = InFlight::new(runnable, &self.shared);
                    let report = self.version.plugin.deliver(&deliveries).await;
                    self.pace.record_call(report.duration);
                    self.finish_batch(slot.take(), report).await;
                }
            }
        }
    }

    /// Takes the deliveries that must not start out of `batch` and records them: released
    /// when the host is shutting down or too little of the lease is left for a call, dead
    /// when an earlier attempt used up the attempts (it took its host down or outlived its
    /// lease). Returns the others.
    async fn set_aside_unstartable(&self, batch: &mut Vec<Claimed>) -> Vec<Claimed> {
        let draining = self.shared.draining.load(Ordering::Relaxed);
        let lease = lease_for(&self.shared.options, &self.version);
        let timeout = self.version.sidecar.limits.timeout;
        let latest_start = lease.saturating_sub(timeout + timeout / 2);
        let now = Instant::now();
        let mut runnable = Vec::with_capacity(batch.len());
        for claimed in batch.drain(..) {
            let completion = if draining || now.duration_since(claimed.claimed_at) > latest_start {
                Completion::Release
            } else if self.version.retry.is_exhausted(claimed.delivery.attempt) {
                Completion::DeadLetter {
                    error: format!(
                        "attempt {} is past the limit of {} attempts: an earlier attempt did not report back (its host stopped or its lease expired)",
                        claimed.delivery.attempt,
                        self.version.retry.max_attempts.unwrap_or_default()
                    ),
                }
            } else {
                runnable.push(claimed);
                continue;
            };
            let metrics = self.metrics.for_queue(&claimed.delivery.queue);
            self.send(claimed, completion, Vec::new(), metrics).await;
        }
        runnable
    }

    async fn finish_one(&self, claimed: Claimed, report: CallReport<Outcome>) {
        let metrics = self.metrics.for_queue(&claimed.delivery.queue);
        metrics.calls.inc();
        metrics.call_duration.observe(report.duration.as_secs_f64());
        let (completion, follow_ups) = match report.result {
            Ok(Outcome::Ok) => (Completion::Delivered, report.published),
            Ok(outcome) => (
                self.after_failure(&claimed, failure_of(outcome)),
                Vec::new(),
            ),
            Err(error) => {
                metrics.crashed.inc();
                tracing::warn!(
                    plugin = %self.version.name,
                    queue = %claimed.delivery.queue,
                    message_id = %claimed.delivery.message.id,
                    attempt = claimed.delivery.attempt,
                    %error,
                    "plugin call failed"
                );
                let failure = Failure::Retry {
                    error: error.to_string(),
                    delay: None,
                };
                (self.after_failure(&claimed, failure), Vec::new())
            }
        };
        self.send(claimed, completion, follow_ups, metrics).await;
    }

    async fn finish_batch(&self, batch: Vec<Claimed>, report: CallReport<Vec<Outcome>>) {
        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX).max(1);
        let per_delivery = report.duration / count;
        match report.result {
            Ok(outcomes) => {
                for (claimed, outcome) in batch.into_iter().zip(outcomes) {
                    let metrics = self.metrics.for_queue(&claimed.delivery.queue);
                    metrics.calls.inc();
                    metrics.call_duration.observe(per_delivery.as_secs_f64());
                    // A destination's follow-up events belong to the batch, not to one
                    // delivery: they are not published.
                    let completion = match outcome {
                        Outcome::Ok => Completion::Delivered,
                        other => self.after_failure(&claimed, failure_of(other)),
                    };
                    self.send(claimed, completion, Vec::new(), metrics).await;
                }
            }
            Err(error) => {
                tracing::warn!(plugin = %self.version.name, %error, deliveries = count, "destination call failed");
                let reason = error.to_string();
                for claimed in batch {
                    let metrics = self.metrics.for_queue(&claimed.delivery.queue);
                    metrics.calls.inc();
                    metrics.crashed.inc();
                    let failure = Failure::Retry {
                        error: reason.clone(),
                        delay: None,
                    };
                    let completion = self.after_failure(&claimed, failure);
                    self.send(claimed, completion, Vec::new(), metrics).await;
                }
            }
        }
    }

    fn after_failure(&self, claimed: &Claimed, failure: Failure) -> Completion {
        self.version
            .retry
            .after_failure(claimed.delivery.attempt, failure, &mut rand::rng())
    }

    async fn send(
        &self,
        claimed: Claimed,
        completion: Completion,
        follow_ups: Vec<FollowUp>,
        metrics: Arc<PluginQueueMetrics>,
    ) {
        if completion != Completion::Release {
            let waited = claimed.due_at.elapsed().unwrap_or_default();
            metrics.delivery_latency.observe(waited.as_secs_f64());
        }
        let finished = Finished {
            claimed,
            completion,
            follow_ups,
            metrics: Some(metrics),
        };
        if self.finished.send(finished).await.is_err() {
            tracing::error!("the completers are gone; a finished delivery is left to its lease");
        }
    }
}

/// A plugin's failure outcome as the retry policy's input.
fn failure_of(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Ok => unreachable!("only failures are converted"),
        Outcome::Retry { reason, delay } => Failure::Retry {
            error: reason,
            delay,
        },
        Outcome::Fatal { reason } => Failure::Fatal { error: reason },
    }
}

/// Deliveries handed to a plugin call. If the call is abandoned (its worker is aborted at the
/// end of the shutdown grace period), they are recorded as orphans, to be released.
struct InFlight<'a> {
    items: Vec<Claimed>,
    shared: &'a Shared,
}

impl<'a> InFlight<'a> {
    fn new(items: Vec<Claimed>, shared: &'a Shared) -> InFlight<'a> {
        InFlight { items, shared }
    }

    fn take(mut self) -> Vec<Claimed> {
        std::mem::take(&mut self.items)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let mut orphans = self
            .shared
            .orphans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        orphans.extend(self.items.drain(..).map(|claimed| claimed.key));
    }
}

/// Writes finished deliveries to the outbox in batches.
async fn complete_loop(shared: Arc<Shared>, finished: Arc<Mutex<mpsc::Receiver<Finished>>>) {
    let limit = shared.options.completion_batch_size.max(1);
    let mut batch: Vec<Finished> = Vec::with_capacity(limit);
    loop {
        batch.clear();
        {
            let mut finished = finished.lock().await;
            if finished.recv_many(&mut batch, limit).await == 0 {
                return;
            }
            let deadline = tokio::time::Instant::now() + shared.options.completion_linger;
            while batch.len() < limit {
                let room = limit - batch.len();
                let more = finished.recv_many(&mut batch, room);
                match tokio::time::timeout_at(deadline, more).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let mut attempt = 0u32;
        loop {
            match outbox_bridge::record(&shared.outbox, &batch).await {
                Ok(lost) => {
                    if lost > 0 {
                        tracing::warn!(
                            lost,
                            "outcomes not recorded: their leases had expired, so the deliveries run again"
                        );
                    }
                    break;
                }
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "recording outcomes failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(error) => {
                    tracing::error!(
                        %error,
                        count = batch.len(),
                        "recording outcomes failed; the deliveries run again when their leases expire"
                    );
                    break;
                }
            }
        }
    }
}

/// Returns expired leases (of crashed or stuck hosts) to their queues, and lets the outbox
/// fold its counters.
async fn housekeeping_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(shared.options.housekeeping_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        match shared.outbox.housekeeping().await {
            Ok(report) if report.rescued.is_empty() => {}
            Ok(report) => {
                tracing::info!(
                    rescued = report.rescued.len(),
                    "returned deliveries with expired leases to their queues"
                );
                for rescued in &report.rescued {
                    shared.wakeups.wake(&rescued.queue);
                }
            }
            Err(error) => tracing::warn!(%error, "outbox housekeeping failed"),
        }
    }
}
