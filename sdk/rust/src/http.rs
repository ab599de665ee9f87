//! Outbound HTTP through `wasi:http/outgoing-handler`: a small blocking client for plugins.
//!
//! The host lets a plugin reach only the hosts the operator granted it in its sidecar file.
//! A request to any other host fails with an [`HttpError`] of kind [`HttpErrorKind::Denied`]
//! whose message names the host to grant.
//!
//! ```no_run
//! use std::time::Duration;
//! use courier_sdk::http::Request;
//! use courier_sdk::Outcome;
//!
//! fn notify(url: &str, body: &[u8]) -> Outcome {
//!     let response = Request::post(url)
//!         .header("content-type", "application/json")
//!         .body(body)
//!         .timeout(Duration::from_secs(5))
//!         .send();
//!     match response {
//!         Ok(response) if response.is_success() => Outcome::ok(),
//!         Ok(response) => Outcome::retry(format!("{url} answered {}", response.status)),
//!         Err(error) => Outcome::retry(error),
//!     }
//! }
//! ```
//!
//! For streaming bodies or trailers, use the raw `wasi:http` bindings in [`wasi`].

use std::fmt;
use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// The WASI 0.2 bindings (from the `wasip2` crate) the SDK itself uses; `wasi::http` is the
/// raw `wasi:http` API.
pub use wasip2 as wasi;

/// How much of a response body [`Request::send`] reads unless told otherwise: 1 MiB.
pub const DEFAULT_RESPONSE_LIMIT: usize = 1024 * 1024;

/// An outbound HTTP request, built by chaining and sent with [`send`](Request::send).
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    response_limit: usize,
}

impl Request {
    /// A request with any method, for example `"PUT"`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            response_limit: DEFAULT_RESPONSE_LIMIT,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header. Headers the host forbids (such as `host` or `connection`) make
    /// [`send`](Request::send) fail with [`HttpErrorKind::InvalidRequest`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into().into_bytes()));
        self
    }

    /// Sets the body, sent as these exact bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the timeout for connecting, for the first byte of the response and between
    /// bytes of it. Without one, the host's defaults apply.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Reads at most `bytes` of the response body ([`DEFAULT_RESPONSE_LIMIT`] by default);
    /// the rest is discarded and [`Response::truncated`] is set.
    pub fn response_limit(mut self, bytes: usize) -> Request {
        self.response_limit = bytes;
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request and waits for the response and its body. Redirects are not
    /// followed: a 3xx is returned like any other response.
    pub fn send(self) -> Result<Response, HttpError> {
        let target = Target::parse(&self.url).map_err(|reason| HttpError {
            kind: HttpErrorKind::InvalidRequest,
            url: self.url.clone(),
            authority: String::new(),
            message: reason,
        })?;
        let fail = |kind: HttpErrorKind, message: String| HttpError {
            kind,
            url: self.url.clone(),
            authority: target.authority.clone(),
            message,
        };
        let from_code = |code: ErrorCode| {
            let kind = HttpErrorKind::of(&code);
            fail(kind, describe(&code))
        };

        let headers = Fields::from_list(&self.headers).map_err(|error| {
            fail(
                HttpErrorKind::InvalidRequest,
                format!("bad header: {error}"),
            )
        })?;
        let request = OutgoingRequest::new(headers);
        let invalid = |what: &str| fail(HttpErrorKind::InvalidRequest, format!("invalid {what}"));
        request
            .set_method(&method(&self.method))
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| invalid("path"))?;
        let options = RequestOptions::new();
        if let Some(timeout) = self.timeout {
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            // A host that does not support one of the timeouts keeps its default for it.
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
        }
        let body = request
            .body()
            .map_err(|()| fail(HttpErrorKind::InvalidRequest, "no request body".into()))?;

        let future = outgoing_handler::handle(request, Some(options)).map_err(from_code)?;
        // A failure while sending the body is often the echo of the request failing as a
        // whole (denied, refused): the response future says why, so it is asked first.
        let body_failure = send_body(body, &self.body).err();
        let response = loop {
            match future.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(from_code(code)),
                Some(Err(())) => {
                    return Err(fail(
                        HttpErrorKind::Protocol,
                        "the response was already taken".into(),
                    ));
                }
                None => future.subscribe().block(),
            }
        };
        if let Some(failure) = body_failure {
            return Err(match failure {
                BodyFailure::Stream(error) => stream_failure(error, from_code, |message| {
                    fail(HttpErrorKind::Connection, message)
                }),
                BodyFailure::Finish(code) => from_code(code),
                BodyFailure::NoStream => {
                    fail(HttpErrorKind::InvalidRequest, "no body stream".into())
                }
            });
        }
        let status = response.status();
        let headers = {
            let fields = response.headers();
            fields
                .entries()
                .into_iter()
                .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
                .collect()
        };
        let incoming = response
            .consume()
            .map_err(|()| fail(HttpErrorKind::Protocol, "no response body".into()))?;
        let (body, truncated) = read_body(&incoming, self.response_limit).map_err(|error| {
            stream_failure(error, from_code, |message| {
                fail(HttpErrorKind::Connection, message)
            })
        })?;
        drop(incoming);
        Ok(Response {
            status,
            headers,
            body,
            truncated,
        })
    }
}

/// Why the request body did not go out.
enum BodyFailure {
    NoStream,
    Stream(StreamError),
    Finish(ErrorCode),
}

/// Writes the whole request body and finishes it.
fn send_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), BodyFailure> {
    {
        let stream = body.write().map_err(|()| BodyFailure::NoStream)?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(BodyFailure::Stream)?;
        }
    }
    OutgoingBody::finish(body, None).map_err(BodyFailure::Finish)
}

/// Reads the body up to `limit` bytes; says whether there was more.
fn read_body(incoming: &IncomingBody, limit: usize) -> Result<(Vec<u8>, bool), StreamError> {
    let Ok(stream) = incoming.stream() else {
        return Ok((Vec::new(), false));
    };
    let mut body = Vec::new();
    loop {
        if body.len() >= limit {
            // One more byte tells a body of exactly `limit` bytes from a longer one.
            return match stream.blocking_read(1) {
                Ok(more) => Ok((body, !more.is_empty())),
                Err(StreamError::Closed) => Ok((body, false)),
                Err(error) => Err(error),
            };
        }
        let wanted = u64::try_from((limit - body.len()).min(64 * 1024)).unwrap_or(64 * 1024);
        match stream.blocking_read(wanted) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok((body, false)),
            Err(error) => return Err(error),
        }
    }
}

fn stream_failure(
    error: StreamError,
    from_code: impl FnOnce(ErrorCode) -> HttpError,
    other: impl FnOnce(String) -> HttpError,
) -> HttpError {
    match error {
        StreamError::Closed => other("the connection closed early".into()),
        StreamError::LastOperationFailed(error) => {
            match wasip2::http::types::http_error_code(&error) {
                Some(code) => from_code(code),
                None => other(error.to_debug_string()),
            }
        }
    }
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_owned()),
    }
}

/// The parts of an `http://` or `https://` URL a request needs.
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            _ => return Err("the URL must start with http:// or https://".into()),
        };
        let rest = rest
            .split_once('#')
            .map_or(rest, |(before, _fragment)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_with_query) = rest.split_at(split);
        if authority.is_empty() {
            return Err("the URL has no host".into());
        }
        if authority.contains('@') {
            return Err("credentials in the URL are not supported; send a header".into());
        }
        let path_with_query = match path_with_query.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{path_with_query}"),
            Some(_) => path_with_query.to_owned(),
        };
        Ok(Target {
            scheme,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

/// A response, with its body read (up to the request's limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code, for example 200.
    pub status: u16,
    /// The headers as (name, value) pairs; names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, or its first [`Request::response_limit`] bytes.
    pub body: Vec<u8>,
    /// Whether the body was longer than the limit and cut.
    pub truncated: bool,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of the first header named `name`, compared without regard to ASCII case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced by U+FFFD).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// What kind of failure an [`HttpError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The host did not let the request out: its host is not granted to this plugin.
    Denied,
    /// The request itself is wrong: a bad URL, method or header. Sending it again will not
    /// help.
    InvalidRequest,
    /// Connecting, the first byte or the next byte took longer than allowed.
    Timeout,
    /// The host could not be resolved or reached, or the connection broke.
    Connection,
    /// The peer broke the HTTP protocol, or something else failed.
    Protocol,
}

impl HttpErrorKind {
    fn of(code: &ErrorCode) -> HttpErrorKind {
        match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                HttpErrorKind::Denied
            }
            ErrorCode::HttpRequestMethodInvalid
            | ErrorCode::HttpRequestUriInvalid
            | ErrorCode::HttpRequestUriTooLong
            | ErrorCode::HttpRequestHeaderSectionSize(_)
            | ErrorCode::HttpRequestHeaderSize(_)
            | ErrorCode::HttpRequestLengthRequired
            | ErrorCode::HttpRequestBodySize(_) => HttpErrorKind::InvalidRequest,
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpErrorKind::Timeout,
            ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpErrorKind::Connection,
            _ => HttpErrorKind::Protocol,
        }
    }
}

/// Why a request got no response.
///
/// Its [`Display`](fmt::Display) says what happened to which URL; for a denied request it
/// names the host the operator must grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    kind: HttpErrorKind,
    url: String,
    authority: String,
    message: String,
}

impl HttpError {
    /// What kind of failure this is.
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    /// The URL of the request.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `host[:port]` of the request, as the operator would grant it.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Whether the same request may succeed later: timeouts, connection and protocol
    /// failures. A denied or invalid request fails the same way until someone changes
    /// the grant or the plugin.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            HttpErrorKind::Timeout | HttpErrorKind::Connection | HttpErrorKind::Protocol
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HttpErrorKind::Denied => write!(
                f,
                "request to {} denied: the host `{}` is not granted to this plugin \
                 (grant it in the plugin's sidecar file)",
                self.url, self.authority
            ),
            _ => write!(f, "request to {} failed: {}", self.url, self.message),
        }
    }
}

impl std::error::Error for HttpError {}

/// A readable text for a `wasi:http` error code.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsTimeout => "DNS timeout".into(),
        ErrorCode::DnsError(payload) => match &payload.rcode {
            Some(rcode) => format!("DNS error ({rcode})"),
            None => "DNS error".into(),
        },
        ErrorCode::DestinationNotFound => "host not found".into(),
        ErrorCode::DestinationUnavailable => "host unavailable".into(),
        ErrorCode::DestinationIpUnroutable => "host unroutable".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTerminated => "connection terminated".into(),
        ErrorCode::ConnectionTimeout => "connect timeout".into(),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            "timed out waiting for the response".into()
        }
        ErrorCode::ConnectionWriteTimeout => "timed out sending the request".into(),
        ErrorCode::TlsCertificateError => "TLS certificate error".into(),
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => "TLS error".into(),
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: Result<(&str, &str), &str>) {
        let actual = Target::parse(url).map(|target| (target.authority, target.path_with_query));
        let expected = expected
            .map(|(authority, path)| (authority.to_owned(), path.to_owned()))
            .map_err(str::to_owned);
        assert_eq!(actual, expected, "parsing {url}");
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        check("https://example.com", Ok(("example.com", "/")));
        check(
            "http://127.0.0.1:8080/hooks?x=1",
            Ok(("127.0.0.1:8080", "/hooks?x=1")),
        );
        check("HTTPS://example.com?x=1#frag", Ok(("example.com", "/?x=1")));
        check("http://[::1]:9000/a/b", Ok(("[::1]:9000", "/a/b")));
        check(
            "ftp://example.com/",
            Err("the URL must start with http:// or https://"),
        );
        check(
            "example.com/hooks",
            Err("the URL must start with http:// or https://"),
        );
        check("http:///path", Err("the URL has no host"));
        check(
            "https://user:pw@example.com/",
            Err("credentials in the URL are not supported; send a header"),
        );
    }
}
