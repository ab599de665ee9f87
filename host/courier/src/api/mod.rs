//! The HTTP API (axum): publish messages, look at queues, plugins and dead letters, redrive
//! dead letters, scrape metrics. Every route but `/healthz` needs the bearer token.

mod auth;
mod error;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub use auth::ApiToken;
pub use error::ApiError;

use crate::message_input;
use crate::metrics::Metrics;
use crate::outbox_bridge;
use crate::registry::Registry;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub outbox: courier_outbox::Outbox,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    /// The largest request body, in bytes.
    pub body_limit: usize,
}

/// The API's routes, with authentication and the body limit.
pub fn router(state: ApiState, token: ApiToken) -> Router {
    let body_limit = state.body_limit;
    let protected = Router::new()
        .route("/v1/messages", post(publish_messages))
        .route("/v1/queues", get(list_queues))
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/{id}/redrive", post(redrive_dead_letter))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn publish_messages(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.body_limit)
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let messages = message_input::parse_body(&body).map_err(ApiError::BadRequest)?;
    let count = messages.len() as u64;
    let ids = outbox_bridge::publish(&state.outbox, messages)
        .await
        .map_err(|error| ApiError::internal("publishing messages", error))?;
    state.metrics.count_published("http", count);
    let body = Json(serde_json::json!({ "ids": ids }));
    Ok((StatusCode::ACCEPTED, body).into_response())
}

async fn list_queues(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let queues = outbox_bridge::queue_stats(&state.outbox)
        .await
        .map_err(|error| ApiError::internal("reading queue statistics", error))?;
    Ok(Json(serde_json::json!({ "queues": queues })).into_response())
}

async fn list_plugins(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "plugins": state.registry.statuses() }))
}

/// `GET /v1/dead-letters?queue=Q&limit=N&after=ID`: oldest first; `after` is the last id of
/// the previous page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterQuery {
    queue: Option<String>,
    limit: Option<u32>,
    after: Option<i64>,
}

async fn list_dead_letters(
    State(state): State<ApiState>,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    if let Some(queue) = &query.queue {
        courier_outbox::validate_queue(queue)
            .map_err(|error| ApiError::BadRequest(format!("`queue`: {error}")))?;
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "`limit` must be from 1 to 10000".to_owned(),
        ));
    }
    let dead =
        outbox_bridge::dead_letters(&state.outbox, query.queue.as_deref(), query.after, limit)
            .await
            .map_err(|error| ApiError::internal("listing dead letters", error))?;
    Ok(Json(serde_json::json!({ "dead_letters": dead })).into_response())
}

async fn redrive_dead_letter(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`id`: `{id}` is not a dead letter id")))?;
    let found = outbox_bridge::redrive(&state.outbox, id)
        .await
        .map_err(|error| ApiError::internal("redriving a dead letter", error))?;
    if !found {
        return Err(ApiError::NotFound(format!("no dead letter with id {id}")));
    }
    Ok((StatusCode::OK, Json(serde_json::json!({ "redriven": id }))).into_response())
}

async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    if let Ok(queues) = outbox_bridge::queue_stats(&state.outbox).await {
        for queue in queues {
            let label = crate::metrics::QueueLabel {
                queue: queue.queue.clone(),
            };
            state
                .metrics
                .queue_pending
                .get_or_create(&label)
                .set(queue.pending);
            state
                .metrics
                .queue_in_flight
                .get_or_create(&label)
                .set(queue.in_flight);
            state
                .metrics
                .queue_dead
                .get_or_create(&label)
                .set(queue.dead);
        }
    }
    let body = state.metrics.encode();
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
