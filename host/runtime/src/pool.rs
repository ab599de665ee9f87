//! The warm instances of one plugin version: idle instances waiting for their next call, and the
//! count of instances in use, at most the plugin's `max_instances`. Instances are created on
//! demand; each concurrent call gets its own, and a call that finds them all in use waits until
//! one is given back. One lock covers both, so a call takes an instance with a single lock and
//! gives it back with another.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// What the pool needs to know of an instance.
pub(crate) trait Reusable {
    /// Calls the instance has served.
    fn uses(&self) -> u32;
}

pub(crate) struct InstancePool<I> {
    state: Mutex<PoolState<I>>,
    /// Signalled whenever an instance stops being in use.
    freed: Notify,
    max_instances: usize,
    max_uses: u32,
}

struct PoolState<I> {
    idle: Vec<I>,
    /// Leases out: instances in calls, or being created for one.
    in_use: usize,
}

/// The right to run one instance; given back when dropped (or with [`InstancePool::release`]).
pub(crate) struct Lease<'a, I> {
    pool: &'a InstancePool<I>,
}

impl<I> Drop for Lease<'_, I> {
    fn drop(&mut self) {
        self.pool.lock().in_use -= 1;
        self.pool.freed.notify_one();
    }
}

impl<I: Reusable> InstancePool<I> {
    pub fn new(max_instances: u32, max_uses: u32) -> InstancePool<I> {
        InstancePool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                in_use: 0,
            }),
            freed: Notify::new(),
            max_instances: max_instances as usize,
            max_uses: max_uses.max(1),
        }
    }

    /// Waits until an instance may run, then hands out an idle one if there is any.
    pub async fn acquire(&self) -> (Lease<'_, I>, Option<I>) {
        loop {
            {
                let mut state = self.lock();
                if state.in_use < self.max_instances {
                    state.in_use += 1;
                    let instance = state.idle.pop();
                    return (Lease { pool: self }, instance);
                }
            }
            // A lease given back since the check above left a permit: this returns at once.
            self.freed.notified().await;
        }
    }

    /// Takes back an instance after a clean call, unless it has served `max_uses` calls (then
    /// it is dropped before its lease is given back).
    pub fn release(&self, instance: I, lease: Lease<'_, I>) {
        if instance.uses() >= self.max_uses {
            drop(instance);
            drop(lease);
            return;
        }
        {
            let mut state = self.lock();
            state.idle.push(instance);
            state.in_use -= 1;
        }
        // The lease is given back above, under the same lock as the instance.
        std::mem::forget(lease);
        self.freed.notify_one();
    }

    /// How many idle instances wait for a call.
    pub fn idle_count(&self) -> usize {
        self.lock().idle.len()
    }
}

impl<I> InstancePool<I> {
    fn lock(&self) -> MutexGuard<'_, PoolState<I>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
    fn at_most_max_instances_are_in_use_and_a_waiting_call_gets_the_next_one_freed() {
        let pool = InstancePool::<Fake>::new(2, 3);
        let (first, none) = poll_once(pin!(pool.acquire())).expect("a free lease");
        assert!(none.is_none(), "nothing idle yet");
        let (second, _) = poll_once(pin!(pool.acquire())).expect("a second lease");

        let mut third = pin!(pool.acquire());
        assert!(poll_once(third.as_mut()).is_none(), "two of two are in use");
        pool.release(Fake(1), first);
        let (third_lease, idle) = poll_once(third.as_mut()).expect("the released one");
        assert_eq!(
            idle.map(|fake| fake.0),
            Some(1),
            "the idle instance is handed out"
        );

        let mut fourth = pin!(pool.acquire());
        assert!(poll_once(fourth.as_mut()).is_none());
        // A crashed call drops its instance with its lease: the lease alone frees the slot.
        drop(second);
        let (fourth_lease, idle) = poll_once(fourth.as_mut()).expect("the dropped lease");
        assert!(idle.is_none(), "a new instance is created in its place");

        // An instance that has served `max_uses` calls is not kept.
        pool.release(Fake(3), third_lease);
        pool.release(Fake(2), fourth_lease);
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(pool.lock().in_use, 0);
    }
}
