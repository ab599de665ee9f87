//! The warm instances of one plugin version: idle instances waiting for their next call, and a
//! semaphore bounding how many instances (so how many calls) exist at once. Instances are
//! created on demand; each concurrent call gets its own.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::instance::Instance;

pub(crate) struct InstancePool {
    idle: Mutex<Vec<Instance>>,
    permits: Arc<Semaphore>,
    max_uses: u32,
}

/// The right to run one instance; released when dropped.
pub(crate) struct Lease {
    _permit: OwnedSemaphorePermit,
}

impl InstancePool {
    pub fn new(max_instances: u32, max_uses: u32) -> InstancePool {
        InstancePool {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_instances as usize)),
            max_uses: max_uses.max(1),
        }
    }

    /// Waits until an instance may run, then hands out an idle one if there is any.
    pub async fn acquire(&self) -> (Lease, Option<Instance>) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let instance = self.lock().pop();
        (Lease { _permit: permit }, instance)
    }

    /// Takes back an instance after a clean call, unless it has served `max_uses` calls.
    pub fn release(&self, instance: Instance, _lease: Lease) {
        if instance.uses < self.max_uses {
            self.lock().push(instance);
        }
    }

    /// How many idle instances wait for a call.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
