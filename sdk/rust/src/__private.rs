//! What the `#[handler]` and `#[destination]` macros expand to call. Not a public API: it
//! changes with the macros.

pub use wasip2;
pub use wit_bindgen;

use crate::{Delivery, IntoOutcome, Outcome, Payload};

/// The SDK's bindings, under the paths the macros' `with:` mappings name.
pub mod wit {
    pub use crate::wit::host;
    pub use crate::wit::types;
    pub use crate::wit::types::{Delivery, Outcome, PluginInfo};
}

/// One `subscribe(..)` of the attribute.
pub struct SubscriptionSpec {
    pub queue: &'static str,
    pub topic: &'static str,
    pub events: &'static [&'static str],
}

pub fn plugin_info(
    name: &str,
    version: &str,
    subscriptions: &[SubscriptionSpec],
) -> wit::PluginInfo {
    wit::PluginInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        subscriptions: subscriptions
            .iter()
            .map(|subscription| wit::types::Subscription {
                queue: subscription.queue.to_owned(),
                topic: subscription.topic.to_owned(),
                events: subscription
                    .events
                    .iter()
                    .map(|event| (*event).to_owned())
                    .collect(),
            })
            .collect(),
    }
}

pub fn run_handler<T, R>(
    delivery: wit::Delivery,
    handler: impl FnOnce(Delivery<T>) -> R,
) -> wit::Outcome
where
    T: Payload,
    R: IntoOutcome,
{
    let outcome = match Delivery::<T>::decode(delivery) {
        Ok(delivery) => handler(delivery).into_outcome(),
        Err(reason) => Outcome::Fatal(reason),
    };
    outcome.into_wit()
}

pub fn run_destination<T, R>(
    batch: Vec<wit::Delivery>,
    destination: impl FnOnce(Vec<Delivery<T>>) -> Vec<R>,
) -> Vec<wit::Outcome>
where
    T: Payload,
    R: IntoOutcome,
{
    merge_batch(batch, destination)
        .into_iter()
        .map(Outcome::into_wit)
        .collect()
}

/// Decodes every delivery, hands the ones that decode to `destination`, and answers the
/// others fatal, keeping the batch's order.
fn merge_batch<T, R>(
    batch: Vec<wit::Delivery>,
    destination: impl FnOnce(Vec<Delivery<T>>) -> Vec<R>,
) -> Vec<Outcome>
where
    T: Payload,
    R: IntoOutcome,
{
    let total = batch.len();
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(total);
    let mut decoded = Vec::with_capacity(total);
    for delivery in batch {
        match Delivery::<T>::decode(delivery) {
            Ok(delivery) => {
                decoded.push(delivery);
                outcomes.push(None);
            }
            Err(reason) => outcomes.push(Some(Outcome::Fatal(reason))),
        }
    }
    let handed = decoded.len();
    let answered = if handed == 0 {
        Vec::new()
    } else {
        destination(decoded)
    };
    if answered.len() != handed {
        let reason = format!(
            "the destination returned {} outcomes for a batch of {handed} deliveries",
            answered.len()
        );
        return (0..total).map(|_| Outcome::retry(&reason)).collect();
    }
    let mut answered = answered.into_iter().map(IntoOutcome::into_outcome);
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Some(fatal) => fatal,
            None => answered
                .next()
                .unwrap_or_else(|| Outcome::retry("missing outcome")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_delivery(payload: &str) -> wit::Delivery {
        wit::Delivery {
            message: wit::types::Message {
                id: "id".into(),
                name: "order.placed".into(),
                topic: "order".into(),
                payload: payload.as_bytes().to_vec(),
                published_at: 0,
                deliver_at: 0,
                headers: Vec::new(),
            },
            queue: "orders".into(),
            attempt: 1,
        }
    }

    #[test]
    fn undecodable_deliveries_are_fatal_and_the_rest_keep_their_places() {
        let batch = vec![wit_delivery("1"), wit_delivery("\"x\""), wit_delivery("3")];
        let outcomes = merge_batch(batch, |decoded: Vec<Delivery<u32>>| {
            decoded
                .iter()
                .map(|delivery| Outcome::retry(delivery.message.payload))
                .collect()
        });
        assert_eq!(
            outcomes,
            vec![
                Outcome::retry("1"),
                Outcome::fatal(
                    "payload of order.placed (message id) does not decode as u32: \
                     invalid type: string \"x\", expected u32 at line 1 column 3"
                ),
                Outcome::retry("3"),
            ]
        );
    }

    #[test]
    fn a_wrong_number_of_outcomes_retries_the_whole_batch() {
        let batch = vec![wit_delivery("1"), wit_delivery("2")];
        let outcomes = merge_batch(batch, |_: Vec<Delivery<u32>>| vec![Outcome::ok()]);
        let reason = "the destination returned 1 outcomes for a batch of 2 deliveries";
        assert_eq!(
            outcomes,
            vec![Outcome::retry(reason), Outcome::retry(reason)]
        );
    }
}
