//! Outbound HTTP from plugins (`wasi:http/outgoing-handler`): only to the hosts the operator
//! granted, sent for real or answered from stubs, and always recorded in the call's report.
//!
//! A request to a host that is not granted fails inside the guest with the HTTP error code
//! `HTTP-request-denied`, and the runtime logs one warning line naming the request and the fix.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::call_context::CallContext;
use crate::logs::{LogLevel, LogSource};

/// How a plugin's granted outbound requests are answered.
#[derive(Debug, Clone, Default)]
pub enum HttpMode {
    /// Sent over the network.
    #[default]
    Network,
    /// Never sent: answered by the stub whose URL equals the request's URL (scheme, host, port,
    /// path and query; the host compared case-insensitively). A request no stub matches is
    /// answered `404 Not Found` with a plain-text body naming the request, the record says
    /// [`HttpRequestResult::NoStub`], and a host log line says which stub is missing.
    Stubbed(Vec<HttpStub>),
}

/// A canned response for one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStub {
    /// The full URL, for example `https://api.example.com/v1/send`.
    pub url: String,
    /// The response status.
    pub status: u16,
    /// The response headers.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

/// An outbound request a plugin made during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequestRecord {
    /// For example `POST`.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// The request headers, including `host`.
    pub headers: Vec<(String, String)>,
    /// The request body (empty for a denied request).
    pub body: Vec<u8>,
    /// What became of it.
    pub result: HttpRequestResult,
}

/// What became of an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRequestResult {
    /// The host is not granted: the guest got `HTTP-request-denied`.
    Denied,
    /// Answered (by the network or a stub) with this status.
    Answered {
        /// The response status.
        status: u16,
    },
    /// Stubbed mode, and no stub matched the URL: answered `404`.
    NoStub,
    /// Sending failed (connection refused, TLS, timeout...).
    Failed {
        /// The error the guest got.
        error: String,
    },
    /// The call ended before the response arrived.
    Unfinished,
}

/// The hosts a plugin may reach. Entries: `example.com` (any port), `example.com:8443` (that
/// port only), `*.example.com` (any subdomain, not `example.com` itself), IP addresses alike
/// (`127.0.0.1:8080`, `[::1]:8080`). Hosts compare case-insensitively.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants(Vec<Grant>);

#[derive(Debug, Clone)]
struct Grant {
    host: String,
    subdomains: bool,
    port: Option<u16>,
}

impl Grants {
    pub fn parse(entries: &[String]) -> Result<Grants, String> {
        entries
            .iter()
            .map(|entry| parse_grant(entry))
            .collect::<Result<Vec<_>, _>>()
            .map(Grants)
    }

    pub fn allows(&self, uri: &Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        self.0.iter().any(|grant| {
            let host_matches = if grant.subdomains {
                host.strip_suffix(grant.host.as_str())
                    .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
            } else {
                host == grant.host
            };
            host_matches && grant.port.is_none_or(|p| p == port)
        })
    }
}

fn parse_grant(entry: &str) -> Result<Grant, String> {
    let invalid = |why: &str| {
        format!("invalid grant {entry:?}: {why} (expected `host`, `host:port` or `*.domain`)")
    };
    let entry = entry.trim();
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("unclosed `[`"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(invalid("unexpected text after `]`")),
        };
        (host, port)
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .map_err(|_| invalid("the port is not a number"))
        })
        .transpose()?;
    let (host, subdomains) = match host.strip_prefix("*.") {
        Some(domain) => (domain, true),
        None => (host, false),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
    {
        return Err(invalid("not a host name or IP address"));
    }
    Ok(Grant {
        host: host.to_ascii_lowercase(),
        subdomains,
        port,
    })
}

/// What every instance of a plugin shares about outbound HTTP.
#[derive(Debug)]
pub(crate) struct HttpPolicy {
    pub grants: Grants,
    pub mode: HttpMode,
    /// Upper bound of every connect / first-byte / between-bytes timeout.
    pub timeout: Duration,
}

/// The `wasi:http` hooks of one instance.
pub(crate) struct HttpHooks {
    pub policy: Arc<HttpPolicy>,
    /// The instance's call context; a request belongs to the call that made it.
    pub call: Arc<CallContext>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        let call = self.call.clone();
        let this_call = call.current();
        let method = request.method().to_string();
        let url = request.uri().to_string();
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect::<Vec<_>>();

        if !policy.grants.allows(request.uri()) {
            let host = request.uri().host().unwrap_or("").to_string();
            call.record_http(
                &this_call,
                HttpRequestRecord {
                    method: method.clone(),
                    url: url.clone(),
                    headers,
                    body: Vec::new(),
                    result: HttpRequestResult::Denied,
                },
            );
            call.log_for(
                &this_call,
                LogLevel::Warn,
                LogSource::Host,
                format!(
                    "outbound HTTP request {method} {url} denied: host {host:?} is not granted; add it to the plugin's grants"
                ),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }

        Box::new(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let index = call.record_http(
                &this_call,
                HttpRequestRecord {
                    method: method.clone(),
                    url: url.clone(),
                    headers,
                    body: body.to_vec(),
                    result: HttpRequestResult::Unfinished,
                },
            );
            let record = |result: HttpRequestResult| {
                if let Some(index) = index {
                    call.set_http_result(&this_call, index, result);
                }
            };
            match &policy.mode {
                HttpMode::Stubbed(stubs) => {
                    let wanted = normalize_url(&parts.uri);
                    let stub = stubs.iter().find(|stub| {
                        stub.url
                            .parse::<Uri>()
                            .is_ok_and(|uri| normalize_url(&uri) == wanted)
                    });
                    let response = match stub {
                        Some(stub) => {
                            record(HttpRequestResult::Answered {
                                status: stub.status,
                            });
                            stub_response(stub.status, &stub.headers, stub.body.clone())
                        }
                        None => {
                            record(HttpRequestResult::NoStub);
                            call.log_for(
                                &this_call,
                                LogLevel::Warn,
                                LogSource::Host,
                                format!("no HTTP stub for {method} {url}: answered 404"),
                            );
                            stub_response(
                                404,
                                &[("content-type".into(), "text/plain".into())],
                                format!("no stub for {method} {url}").into_bytes(),
                            )
                        }
                    }?;
                    let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                        Box::new(async { Ok(()) });
                    Ok((response, done))
                }
                HttpMode::Network => {
                    let request = http::Request::from_parts(
                        parts,
                        Full::new(body).map_err(|never| match never {}),
                    );
                    let options = bounded_options(options, policy.timeout);
                    match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
                        Ok((response, io)) => {
                            record(HttpRequestResult::Answered {
                                status: response.status().as_u16(),
                            });
                            let io: Box<
                                dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send,
                            > = Box::new(io);
                            Ok((response.map(|body| body.boxed_unsync()), io))
                        }
                        Err(error) => {
                            record(HttpRequestResult::Failed {
                                error: error.to_string(),
                            });
                            Err(error)
                        }
                    }
                }
            }
        })
    }
}

fn stub_response(
    status: u16,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> wasmtime_wasi_http::Result<http::Response<WasiBody>> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|error| wasmtime_wasi_http::Error::InternalError(Some(error.to_string())))
}

/// Every timeout set, and none beyond the plugin's call timeout.
fn bounded_options(options: Option<RequestOptions>, limit: Duration) -> RequestOptions {
    let options = options.unwrap_or_default();
    let bound = |value: Option<Duration>| Some(value.map_or(limit, |value| value.min(limit)));
    RequestOptions {
        connect_timeout: bound(options.connect_timeout),
        first_byte_timeout: bound(options.first_byte_timeout),
        between_bytes_timeout: bound(options.between_bytes_timeout),
    }
}

/// `scheme://host[:port]/path[?query]` with the scheme and host lowercased and an empty path as
/// `/`, so that stub URLs and request URLs compare equal when they address the same thing.
fn normalize_url(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{path}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(grants: &[&str], url: &str, allowed: bool) {
        let grants = Grants::parse(&grants.iter().map(|g| g.to_string()).collect::<Vec<_>>())
            .expect("valid grants");
        let uri: Uri = url.parse().unwrap();
        assert_eq!(grants.allows(&uri), allowed, "{grants:?} {url}");
    }

    #[test]
    fn grants() {
        check(&[], "https://example.com/", false);
        check(&["example.com"], "https://example.com/x", true);
        check(&["example.com"], "http://EXAMPLE.com:8080/x", true);
        check(&["Example.COM"], "https://example.com/", true);
        check(&["example.com"], "https://api.example.com/", false);
        check(&["example.com"], "https://example.com.evil.net/", false);
        check(&["example.com:8443"], "https://example.com/", false);
        check(&["example.com:8443"], "https://example.com:8443/", true);
        check(&["example.com:443"], "https://example.com/", true);
        check(&["example.com:80"], "http://example.com/", true);
        check(&["*.example.com"], "https://api.example.com/", true);
        check(&["*.example.com"], "https://example.com/", false);
        check(&["*.example.com"], "https://badexample.com/", false);
        check(&["127.0.0.1:8080"], "http://127.0.0.1:8080/hook", true);
        check(&["127.0.0.1:8080"], "http://127.0.0.1:8081/hook", false);
        check(&["[::1]:8080"], "http://[::1]:8080/", true);
    }

    #[test]
    fn invalid_grants() {
        for entry in ["", "example.com:http", "exa mple.com", "[::1", "*."] {
            let error = Grants::parse(&[entry.to_string()]).unwrap_err();
            assert!(error.contains("invalid grant"), "{entry}: {error}");
        }
    }

    #[test]
    fn urls_normalize() {
        let check = |a: &str, b: &str| {
            assert_eq!(
                normalize_url(&a.parse().unwrap()),
                normalize_url(&b.parse().unwrap())
            )
        };
        check("https://Example.com", "https://example.com/");
        check("https://example.com/a?b=1", "HTTPS://example.com/a?b=1");
    }
}
