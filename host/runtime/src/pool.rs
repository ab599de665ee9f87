//! The warm instances of one plugin version: idle instances waiting for their next call, and a
//! semaphore bounding how many instances (so how many calls) exist at once. Instances are
//! created on demand; each concurrent call gets its own, and calls that find them all in use
//! wait their turn, first come first served.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the pool needs to know of an instance.
pub(crate) trait Reusable {
    /// Calls the instance has served.
    fn uses(&self) -> u32;
}

pub(crate) struct InstancePool<I> {
    idle: Mutex<Vec<I>>,
    permits: Arc<Semaphore>,
    max_uses: u32,
}

/// The right to run one instance; given back when dropped.
pub(crate) struct Lease {
    _permit: OwnedSemaphorePermit,
}

impl<I: Reusable> InstancePool<I> {
    pub fn new(max_instances: u32, max_uses: u32) -> InstancePool<I> {
        InstancePool {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_instances as usize)),
            max_uses: max_uses.max(1),
        }
    }

    /// Waits until an instance may run, then hands out an idle one if there is any.
    pub async fn acquire(&self) -> (Lease, Option<I>) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let instance = self.lock().pop();
        (Lease { _permit: permit }, instance)
    }

    /// Takes back an instance after a clean call, unless it has served `max_uses` calls (then
    /// it is dropped before its lease is given back).
    pub fn release(&self, instance: I, lease: Lease) {
        if instance.uses() < self.max_uses {
            self.lock().push(instance);
        } else {
            drop(instance);
        }
        drop(lease);
    }

    /// How many idle instances wait for a call.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<I>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// A stand-in for an instance, with the number of calls it has served.
    struct Fake(u32);

    impl Reusable for Fake {
        fn uses(&self) -> u32 {
            self.0
        }
    }

    /// Polls `future` once: `Some` if it is ready.
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        match future.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn at_most_max_instances_are_in_use_and_waiting_calls_are_served_in_turn() {
        let pool = InstancePool::<Fake>::new(2, 3);
        let (first, none) = poll_once(pin!(pool.acquire())).expect("a free lease");
        assert!(none.is_none(), "nothing idle yet");
        let (second, _) = poll_once(pin!(pool.acquire())).expect("a second lease");

        let mut third = pin!(pool.acquire());
        let mut fourth = pin!(pool.acquire());
        assert!(poll_once(third.as_mut()).is_none(), "two of two are in use");
        assert!(poll_once(fourth.as_mut()).is_none());
        pool.release(Fake(1), first);
        assert!(
            poll_once(fourth.as_mut()).is_none(),
            "the call that waited first goes first"
        );
        let (third_lease, idle) = poll_once(third.as_mut()).expect("the released one");
        assert_eq!(
            idle.map(|fake| fake.0),
            Some(1),
            "the idle instance is handed out"
        );

        // A crashed call drops its instance with its lease: the lease alone frees the slot.
        drop(second);
        let (fourth_lease, idle) = poll_once(fourth.as_mut()).expect("the dropped lease");
        assert!(idle.is_none(), "a new instance is created in its place");

        // An instance that has served `max_uses` calls is not kept.
        pool.release(Fake(3), third_lease);
        pool.release(Fake(2), fourth_lease);
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(pool.permits.available_permits(), 2);
    }
}
