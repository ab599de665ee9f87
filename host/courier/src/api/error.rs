//! The one mapping from the API's failures to HTTP responses: a status and
//! `{"error": "..."}`. Internal failures are logged and answered with a generic message, so
//! database errors never reach clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed; the message names the field.
    BadRequest(String),
    /// 401: no token or the wrong one.
    Unauthorized,
    /// 404: no such resource.
    NotFound(String),
    /// 413: the body is larger than the limit, in bytes.
    PayloadTooLarge(usize),
    /// 500: something failed inside the host. The text is logged, never sent.
    Internal(String),
}

impl ApiError {
    /// An internal failure, logged with what the host was doing.
    pub fn internal(doing: &str, error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{doing}: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (send `Authorization: Bearer $COURIER_API_TOKEN`)"
                    .to_owned(),
            ),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than the limit of {limit} bytes"),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the host's log".to_owned(),
                )
            }
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
