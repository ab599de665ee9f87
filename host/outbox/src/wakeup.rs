//! Wake-ups: workers sleep until their queue has something due. A `LISTEN` connection
//! receives the outbox's notifications (one per queue per transaction, the queue name as
//! payload) and wakes only that queue's workers; it reconnects by itself, and an interval
//! poll wakes every queue as a fallback (for scheduled deliveries, and for notifications
//! lost while the connection was down).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Outbox;
use crate::error::OutboxError;

/// The registry of per-queue wake-up signals, fed by a background `LISTEN` task and an
/// interval poll. Cheap to clone; the background tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct Wakeups {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues: Vec<String> = self.shared.signals().keys().cloned().collect();
        f.debug_struct("Wakeups").field("queues", &queues).finish()
    }
}

#[derive(Default)]
struct Shared {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Shared {
    fn signals(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, queue: &str) {
        if let Some(signal) = self.signals().get(queue) {
            signal.notify_one();
        }
    }

    fn wake_all(&self) {
        for signal in self.signals().values() {
            signal.notify_one();
        }
    }
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Wakeups {
    /// Connects a `LISTEN` session to the outbox's channel (so a database that cannot be
    /// reached is reported now) and starts the background tasks: the listener, and a poll
    /// that wakes every queue each `poll_interval`.
    pub async fn start(outbox: &Outbox, poll_interval: Duration) -> Result<Self, OutboxError> {
        if poll_interval.is_zero() {
            return Err(OutboxError::InvalidArgument(
                "the wake-up poll interval must be above zero".to_owned(),
            ));
        }
        let mut listener = PgListener::connect_with(outbox.pool()).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(&outbox.wakeup_channel()).await?;

        let shared = Arc::new(Shared::default());
        let listening = tokio::spawn(listen(listener, Arc::clone(&shared)));
        let polling = tokio::spawn(poll(poll_interval, Arc::clone(&shared)));
        Ok(Self {
            shared,
            _tasks: Arc::new(Tasks(vec![listening, polling])),
        })
    }

    /// The signal of `queue`, created on first use. A notification for the queue (or a poll
    /// tick) calls [`Notify::notify_one`]: it wakes one task waiting on
    /// [`Notify::notified`], or, if none waits, lets the next wait return at once, so a
    /// wake-up that arrives while the worker is busy is never lost.
    pub fn queue(&self, queue: &str) -> Arc<Notify> {
        Arc::clone(
            self.shared
                .signals()
                .entry(queue.to_owned())
                .or_insert_with(|| Arc::new(Notify::new())),
        )
    }

    /// Wakes the workers of `queue`, as a notification would.
    pub fn wake(&self, queue: &str) {
        self.shared.wake(queue);
    }

    /// Wakes the workers of every queue, as the poll does.
    pub fn wake_all(&self) {
        self.shared.wake_all();
    }
}

async fn listen(mut listener: PgListener, shared: Arc<Shared>) {
    let mut failures: u32 = 0;
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                failures = 0;
                shared.wake(notification.payload());
            }
            Ok(None) => {
                // The connection dropped; the listener reconnects (and listens again) on the
                // next call. Notifications sent meanwhile are lost: wake everyone.
                tracing::warn!("the outbox LISTEN connection was lost; reconnecting");
                shared.wake_all();
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(%error, retry_in = ?pause, "the outbox LISTEN connection failed");
                shared.wake_all();
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn poll(interval: Duration, shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        shared.wake_all();
    }
}
