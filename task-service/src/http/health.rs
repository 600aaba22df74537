//! The endpoints for operators and orchestrators: liveness, readiness and Prometheus metrics.
//! None of them needs a gateway assertion; the service listens on an internal network only.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::error::ErrorResponse;
use serde_json::json;

use super::AppState;
use crate::http::error::{ApiError, error_response};

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Alive: the process answers HTTP. Never touches the database, so a database outage does not
/// get the process restarted.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the database answers a trivial query. Until then, a load balancer sends no traffic.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready: the database does not answer");
            error_response(&ErrorResponse::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Database unavailable",
            ))
        }
    }
}

/// This instance's metrics in the Prometheus text format, with the pool gauges read now.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store().record_pool_state();
    let text = state
        .metrics()
        .render()
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}
