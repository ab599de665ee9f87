//! The bytes POSTed for messages: each message in the JSON form of the seed library,
//! `{"name", "meta": {"uuid", "published_at", "deliver_at", "headers"?}, "payload"}`, with
//! the payload embedded exactly as published; a batch is a JSON array of those.

use courier_sdk::serde_json;
use courier_sdk::{Message, RawPayload};
use sha2::{Digest, Sha256};

/// One message as a JSON object, or why it cannot be (a payload that is not JSON, which the
/// host never hands out).
pub fn message_json(message: &Message<RawPayload>) -> Result<String, String> {
    let payload = message.payload.as_bytes();
    if serde_json::from_slice::<serde_json::Value>(payload).is_err() {
        return Err(format!("the payload of message {} is not JSON", message.id));
    }
    let payload = String::from_utf8_lossy(payload);
    let mut json = String::with_capacity(payload.len() + 160);
    json.push_str("{\"name\":");
    json.push_str(&string(&message.name));
    json.push_str(",\"meta\":{\"uuid\":");
    json.push_str(&string(&message.id));
    json.push_str(",\"published_at\":");
    json.push_str(&string(&rfc3339(message.published_at.as_millis())));
    json.push_str(",\"deliver_at\":");
    json.push_str(&string(&rfc3339(message.deliver_at.as_millis())));
    if !message.headers.is_empty() {
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect();
        json.push_str(",\"headers\":");
        json.push_str(&serde_json::Value::Object(headers).to_string());
    }
    json.push_str("},\"payload\":");
    json.push_str(payload.trim());
    json.push('}');
    Ok(json)
}

/// A batch: the JSON array of the messages' objects, in order.
pub fn batch_json<'a>(objects: impl IntoIterator<Item = &'a str>) -> String {
    let mut json = String::from("[");
    for (index, object) in objects.into_iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str(object);
    }
    json.push(']');
    json
}

/// The `webhook-id` of a batch: the message id for a batch of one, otherwise `batch_` and
/// 32 hex digits of SHA-256 over the ids in order — the same on every retry of the same
/// batch, so a receiver can deduplicate it.
pub fn batch_id<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let ids: Vec<&str> = ids.into_iter().collect();
    if let [only] = ids.as_slice() {
        return (*only).to_owned();
    }
    let mut hasher = Sha256::new();
    for id in &ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let mut id = String::from("batch_");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

fn string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// `2026-11-27T16:05:37.123Z` for milliseconds since the Unix epoch (UTC, proleptic
/// Gregorian calendar).
pub fn rfc3339(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// The (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use courier_sdk::Timestamp;

    use super::*;

    fn message(payload: &str, headers: &[(&str, &str)]) -> Message<RawPayload> {
        Message {
            id: "0190d4a8-7c1e-7000-8000-00000000002a".into(),
            name: "user.created".into(),
            topic: "user".into(),
            payload: RawPayload(payload.as_bytes().to_vec()),
            published_at: Timestamp::from_millis(1_614_265_330_123),
            deliver_at: Timestamp::from_millis(1_614_265_390_000),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_message_in_the_seed_json_form_with_the_payload_verbatim() {
        assert_eq!(
            message_json(&message(r#" {"email": "ada@example.com", "n": 1.50} "#, &[])),
            Ok(concat!(
                r#"{"name":"user.created","meta":{"uuid":"0190d4a8-7c1e-7000-8000-00000000002a","#,
                r#""published_at":"2021-02-25T15:02:10.123Z","deliver_at":"2021-02-25T15:03:10.000Z"},"#,
                r#""payload":{"email": "ada@example.com", "n": 1.50}}"#
            )
            .to_owned())
        );
    }

    #[test]
    fn headers_go_in_meta_when_there_are_some() {
        let json = message_json(&message("null", &[("tenant", "acme \"one\"")])).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["meta"]["headers"]["tenant"], "acme \"one\"");
        assert_eq!(value["payload"], serde_json::Value::Null);
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused() {
        assert_eq!(
            message_json(&message("{nope", &[])),
            Err("the payload of message 0190d4a8-7c1e-7000-8000-00000000002a is not JSON".into())
        );
    }

    #[test]
    fn a_batch_is_an_array() {
        assert_eq!(
            batch_json(["{\"a\":1}", "{\"b\":2}"]),
            "[{\"a\":1},{\"b\":2}]"
        );
        assert_eq!(batch_json([]), "[]");
    }

    #[test]
    fn batch_ids_are_stable_and_a_single_message_keeps_its_id() {
        assert_eq!(batch_id(["only"]), "only");
        let id = batch_id(["a", "b"]);
        assert_eq!(id, batch_id(["a", "b"]));
        assert_ne!(id, batch_id(["b", "a"]));
        assert!(id.starts_with("batch_") && id.len() == 6 + 32, "{id}");
    }

    fn check_rfc3339(millis: i64, expected: &str) {
        assert_eq!(rfc3339(millis), expected, "{millis} ms");
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        check_rfc3339(0, "1970-01-01T00:00:00.000Z");
        check_rfc3339(1_614_265_330_000, "2021-02-25T15:02:10.000Z");
        check_rfc3339(951_782_400_000, "2000-02-29T00:00:00.000Z");
        check_rfc3339(4_107_542_399_999, "2100-02-28T23:59:59.999Z");
        check_rfc3339(-1, "1969-12-31T23:59:59.999Z");
        check_rfc3339(253_402_300_799_000, "9999-12-31T23:59:59.000Z");
    }
}
