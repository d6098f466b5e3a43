//! What an engine tells about itself: stats, health, breaker events, the audit trail; with the
//! `metrics` feature its Prometheus metrics, with `admin` the HTTP endpoint that serves them.

use super::Engine;
#[cfg(feature = "admin")]
use crate::admin::{AdminOptions, AdminServer};
#[cfg(feature = "admin")]
use crate::error::Error;
use crate::events::BreakerEvent;
#[cfg(feature = "metrics")]
use crate::metrics::{EngineCollector, openmetrics, prometheus_text};
use crate::stats::{Health, Stats};
#[cfg(feature = "metrics")]
use prometheus_client::registry::Registry;
#[cfg(feature = "admin")]
use std::net::SocketAddr;

impl Engine {
    /// Drains the breaker transitions recorded since the last call into `out` (at most 1,024
    /// are kept between calls; [`Stats::events_dropped`] counts the rest).
    pub fn drain_events(&self, out: &mut Vec<BreakerEvent>) -> usize {
        let before = out.len();
        while let Some(e) = self.sh.events.pop() {
            out.push(e);
        }
        out.len() - before
    }

    /// The operator actions recorded so far (the newest [`AUDIT_CAPACITY`](crate::audit::AUDIT_CAPACITY)), oldest
    /// first. See [`act_as`](crate::audit::act_as) for how an action names its actor.
    pub fn audit_log(&self) -> Vec<crate::audit::AuditRecord> {
        self.sh.audit().since(0)
    }

    /// The records numbered above `seq` (to follow the trail without reading it all again).
    pub fn audit_since(&self, seq: u64) -> Vec<crate::audit::AuditRecord> {
        self.sh.audit().since(seq)
    }

    /// Counters per level, breaker states, latency, and the model's prediction.
    pub fn stats(&self) -> Stats {
        crate::stats::collect(&self.sh)
    }

    /// A summary for a health check.
    pub fn health(&self) -> Health {
        crate::stats::health(&self.sh)
    }
}

#[cfg(feature = "metrics")]
impl Engine {
    /// A collector of this engine's metrics, to register with an application's own
    /// `prometheus_client` registry (`registry.register_collector(Box::new(...))`).
    pub fn metrics_collector(&self) -> EngineCollector {
        EngineCollector::of(self.shared_arc())
    }

    /// Registers this engine's metrics with `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.metrics_collector()));
    }

    /// The engine's metrics now, in the OpenMetrics text format (`# EOF` included): what
    /// `prometheus-client` encodes, served to scrapers that accept
    /// `application/openmetrics-text`.
    pub fn metrics_openmetrics(&self) -> String {
        openmetrics(self.metrics_collector())
    }

    /// The engine's metrics now, in the Prometheus text format (`text/plain; version=0.0.4`),
    /// which every Prometheus parser reads (`promtool check metrics` among them).
    pub fn metrics_text(&self) -> String {
        prometheus_text(&self.metrics_openmetrics())
    }
}

#[cfg(feature = "admin")]
impl Engine {
    /// Starts the admin endpoint (`/metrics`, `/health`, `/ready`) on a thread of its own and
    /// returns the address it listens on (useful with port 0). One per engine: a second call
    /// while it runs is refused. It stops with [`Engine::stop_admin`] or when the engine is
    /// dropped; after a shutdown it keeps answering (`/health` says the engine stopped).
    pub fn serve_admin(&self, opts: &AdminOptions) -> Result<SocketAddr, Error> {
        let mut slot = crate::sync::lock(self.admin_slot());
        if let Some(s) = slot.as_ref() {
            return Err(Error::Config(format!("the admin endpoint already listens on {}", s.addr)));
        }
        let server = AdminServer::start(self.shared_arc(), opts)?;
        let addr = server.addr;
        *slot = Some(server);
        let auth = if opts.token.is_some() { " (bearer token)" } else { "" };
        self.shared_arc().audit().record(
            "admin_endpoint",
            "admin endpoint".into(),
            "stopped".into(),
            format!("listening on {addr}{auth}"),
        );
        Ok(addr)
    }

    /// Stops the admin endpoint; returns false if it was not running.
    pub fn stop_admin(&self) -> bool {
        let server = crate::sync::lock(self.admin_slot()).take();
        let Some(server) = server else { return false };
        let addr = server.addr;
        drop(server);
        self.shared_arc().audit().record(
            "admin_endpoint",
            "admin endpoint".into(),
            format!("listening on {addr}"),
            "stopped".into(),
        );
        true
    }

    /// Where the admin endpoint listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        crate::sync::lock(self.admin_slot()).as_ref().map(|s| s.addr)
    }
}
