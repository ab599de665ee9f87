//! A minimal HTTP/1.1 client for the host's own API, used by `courier plugins` (and by tests
//! that talk to a running host).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The status and body of an answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: http::StatusCode,
    pub body: Bytes,
}

impl ApiResponse {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Courier host answers at http://{address} ({source}); start one with `courier run`, or point `--listen` at it"
    )]
    Connect {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with http://{address} failed: {source}")]
    Http {
        address: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
}

/// Sends one request to the API at `address` and reads the whole answer.
pub async fn send(
    address: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<ApiResponse, ClientError> {
    let address = reachable_address(address);
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| ClientError::Connect { address, source })?;
    let http_error = |source| ClientError::Http { address, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, address.to_string());
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(request).await.map_err(http_error)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http_error)?
        .to_bytes();
    Ok(ApiResponse { status, body })
}

/// A host listening on every interface is reached on loopback.
pub fn reachable_address(listen: SocketAddr) -> SocketAddr {
    match listen {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}
