//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(secret, "id.timestamp.body")),
//! one per secret, space-separated, so a receiver can rotate its secret without a gap.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// A signing secret: the key bytes behind `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = BASE64
            .decode(encoded)
            .map_err(|error| format!("is not `whsec_` followed by base64 ({error})"))?;
        if key.is_empty() {
            return Err("is empty".to_owned());
        }
        Ok(Secret(key))
    }
}

/// The value of the `webhook-signature` header for `body` sent as message `id` at
/// `timestamp` (seconds since the Unix epoch): one `v1,<base64>` per secret, in order,
/// separated by single spaces.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut header = String::new();
    for secret in secrets {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1,");
        header.push_str(&BASE64.encode(mac.finalize().into_bytes()));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_standard_webhooks_test_vector() {
        let secret = Secret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(
            sign(&[secret], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn the_prefix_is_optional() {
        let bare = VECTOR_SECRET.strip_prefix("whsec_").unwrap();
        let secret = Secret::parse(bare).unwrap();
        assert_eq!(
            sign(&[secret], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn several_secrets_sign_in_order_separated_by_spaces() {
        let first = Secret::parse(VECTOR_SECRET).unwrap();
        let second = Secret::parse("whsec_c2Vjb25kIHNlY3JldA==").unwrap();
        let header = sign(
            &[first, second.clone()],
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        );
        let only_second = sign(&[second], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(header, format!("{VECTOR_SIGNATURE} {only_second}"));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            Secret::parse("whsec_not base64!"),
            Err("is not `whsec_` followed by base64 (Invalid symbol 32, offset 3.)".to_owned())
        );
        assert_eq!(Secret::parse("whsec_"), Err("is empty".to_owned()));
    }

    /// An independent implementation (the `standardwebhooks` crate) accepts what we sign,
    /// with each of several secrets.
    #[test]
    fn an_independent_verifier_accepts_the_signatures() {
        let secrets = [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2Vjb25kIHNlY3JldA==",
        ];
        let parsed: Vec<Secret> = secrets.iter().map(|s| Secret::parse(s).unwrap()).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let id = "0190d4a8-7c1e-7000-8000-00000000002a";
        let body = br#"{"name":"user.created","payload":{"email":"ada@example.com"}}"#;
        let signature = sign(&parsed, id, now as i64, body);

        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        for secret in secrets {
            let verifier = standardwebhooks::Webhook::new(secret).unwrap();
            assert!(
                verifier.verify(body, &headers).is_ok(),
                "{secret} does not verify {signature}"
            );
        }
        let stranger = standardwebhooks::Webhook::new("whsec_b3RoZXI=").unwrap();
        assert!(stranger.verify(body, &headers).is_err());
        let mut tampered = body.to_vec();
        tampered[2] = b'N';
        let verifier = standardwebhooks::Webhook::new(secrets[0]).unwrap();
        assert!(verifier.verify(&tampered, &headers).is_err());
    }
}
