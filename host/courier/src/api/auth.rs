//! Bearer-token authentication for every route but `/healthz`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The token the API expects; `None` lets every request in (the host then listens on loopback
/// only).
#[derive(Clone)]
pub struct ApiToken(Option<[u8; 32]>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ApiToken(set)"
        } else {
            "ApiToken(none)"
        })
    }
}

impl ApiToken {
    /// Keeps only a digest of the token, compared in constant time.
    pub fn new(token: Option<&str>) -> ApiToken {
        ApiToken(token.map(digest))
    }

    fn accepts(&self, header: Option<&str>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some(given) = header.and_then(|value| value.strip_prefix("Bearer ")) else {
            return false;
        };
        let given = digest(given.trim());
        // Constant time: every byte is compared.
        given
            .iter()
            .zip(expected.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Refuses requests without the right `Authorization: Bearer` header.
pub async fn require_token(
    State(token): State<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if token.accepts(header) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let token = ApiToken::new(Some("0123456789abcdef"));
        assert!(token.accepts(Some("Bearer 0123456789abcdef")));
        assert!(!token.accepts(Some("Bearer 0123456789abcdeF")));
        assert!(!token.accepts(Some("0123456789abcdef")));
        assert!(!token.accepts(Some("Basic 0123456789abcdef")));
        assert!(!token.accepts(None));
        let open = ApiToken::new(None);
        assert!(open.accepts(None));
    }
}
