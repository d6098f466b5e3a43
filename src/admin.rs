//! The admin endpoint (cargo feature `admin`): a small HTTP server on its own thread that serves
//!
//! - `GET /metrics`: the engine's Prometheus metrics, in the OpenMetrics format when the
//!   scraper's `Accept` header asks for `application/openmetrics-text`, the Prometheus text
//!   format otherwise;
//! - `GET /health`: the health summary as JSON, 200 when healthy or degraded, 503 when unhealthy;
//! - `GET /ready`: 200 while the engine accepts tasks, 503 once it drains or has stopped.
//!
//! `HEAD` works wherever `GET` does. With a token, every request must carry
//! `Authorization: Bearer <token>` (401 otherwise). Other methods get 405, other paths 404.
//! The server reads counters the workers write; it never stops them. It holds the engine weakly
//! and stops when the engine is dropped or [`Engine::stop_admin`](crate::Engine::stop_admin) is called.

use crate::error::Error;
use crate::shared::{RUNNING, Shared};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use tiny_http::{Header, Method, Request, Response, Server};

/// Where the admin endpoint listens, and who may use it.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// `host:port` to bind; port 0 picks a free port. Default: `127.0.0.1:9464` (loopback only).
    pub addr: String,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions { addr: DEFAULT_ADDR.to_owned(), token: None }
    }
}

/// The admin endpoint's default address: loopback, Prometheus' port for exporters of this kind.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// A running admin endpoint; dropping it stops the server and joins its thread.
pub(crate) struct AdminServer {
    pub(crate) addr: SocketAddr,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    pub(crate) fn start(sh: &Arc<Shared>, opts: &AdminOptions) -> Result<AdminServer, Error> {
        if opts.token.as_deref().is_some_and(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::Config("admin token: must be non-empty, without spaces or control characters".into()));
        }
        let addrs: Vec<SocketAddr> = opts
            .addr
            .to_socket_addrs()
            .map_err(|e| Error::Config(format!("admin address {:?}: {e} (expected host:port)", opts.addr)))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| Error::Config(format!("admin address {:?}: resolves to nothing", opts.addr)))?;
        let server =
            Server::http(first).map_err(|e| Error::Io(format!("admin endpoint: cannot listen on {first}: {e}")))?;
        let addr = server.server_addr().to_ip().unwrap_or(first);
        let server = Arc::new(server);
        let (srv, weak, token) = (server.clone(), Arc::downgrade(sh), opts.token.clone());
        let thread = std::thread::Builder::new()
            .name("metafed-admin".into())
            .spawn(move || serve(&srv, &weak, token.as_deref()))
            .map_err(|e| Error::Spawn(format!("admin endpoint thread: {e}")))?;
        tracing::info!(%addr, "admin endpoint listening");
        Ok(AdminServer { addr, server, thread: Some(thread) })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, sh: &Weak<Shared>, token: Option<&str>) {
    for req in server.incoming_requests() {
        let resp = answer(&req, sh, token);
        if let Err(e) = req.respond(resp) {
            tracing::debug!(error = %e, "admin endpoint: could not write a response");
        }
    }
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header names and values are valid")
}

fn text(status: u16, body: &str) -> Reply {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn answer(req: &Request, sh: &Weak<Shared>, token: Option<&str>) -> Reply {
    if let Some(token) = token {
        let given = req.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str());
        let ok = given
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
        if !ok {
            return text(401, "401 unauthorized: send Authorization: Bearer <token>\n")
                .with_header(header("WWW-Authenticate", "Bearer realm=\"metafed\""));
        }
    }
    if !matches!(req.method(), Method::Get | Method::Head) {
        return text(405, "405 method not allowed: GET or HEAD\n").with_header(header("Allow", "GET, HEAD"));
    }
    let path = req.url().split(['?', '#']).next().unwrap_or("");
    let Some(sh) = sh.upgrade() else {
        return text(503, "503 the engine is gone\n");
    };
    match path {
        "/metrics" => {
            let accept = req.headers().iter().find(|h| h.field.equiv("Accept")).map_or("", |h| h.value.as_str());
            let collector = crate::metrics::EngineCollector::of(&sh);
            drop(sh);
            let om = crate::metrics::openmetrics(collector);
            if accept.contains("application/openmetrics-text") {
                Response::from_string(om)
                    .with_header(header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8"))
            } else {
                Response::from_string(crate::metrics::prometheus_text(&om))
                    .with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"))
            }
        }
        "/health" => {
            let h = crate::stats::health(&sh);
            let status = if h.status == crate::stats::HealthStatus::Unhealthy { 503 } else { 200 };
            let mut body = serde_json::to_string_pretty(&h).expect("health serialises");
            body.push('\n');
            Response::from_string(body).with_status_code(status).with_header(header("Content-Type", "application/json"))
        }
        "/ready" => {
            if sh.lifecycle() == RUNNING {
                text(200, "ready\n")
            } else {
                text(503, "503 not ready: the engine is shutting down or has stopped\n")
            }
        }
        "/" => text(200, "metafed admin endpoint: GET /metrics, /health, /ready\n"),
        _ => text(404, "404 not found: GET /metrics, /health or /ready\n"),
    }
}

/// Whether the token a request presents (`given`) is the endpoint's (`token`), in time that
/// depends on the presented token's length only: neither the position of a first difference nor
/// the real token's length shows in how long a refusal takes.
fn constant_time_eq(given: &[u8], token: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != token.len());
    for (i, &x) in given.iter().enumerate() {
        // The token is never empty (refused at start): index it modulo its length.
        diff |= x ^ token[i % token.len()];
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn the_token_comparison_is_exact() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"), "a prefix");
        assert!(!constant_time_eq(b"s3crets3cret", b"s3cret"), "the token twice");
        assert!(!constant_time_eq(b"s3creT", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
    }
}
