//! The faults a run injects: each a real action on a service, a store, a key or the path to
//! one (through the fault proxies), with the action that ends it.

use crate::auth::Auth;
use crate::data::Stores;
use crate::http::HttpService;
use crate::proxy::{Mode, Proxy};
use crate::servers::Servers;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The REST endpoint's proxy resets every connection.
    RestReset,
    /// The GraphQL endpoint's proxy resets every connection.
    GraphqlReset,
    /// The WebSocket endpoint's proxy adds 400 ms to every frame (past the agent timeout).
    WsSlow,
    /// The HTTP service stops (every API agent and the OAuth agent lose it), then restarts.
    HttpDown,
    /// A writer holds an exclusive lock on the orders table: on the SQLite file, or `LOCK
    /// TABLE` in PostgreSQL.
    SqlLock,
    /// The document store goes: redb is closed, or the path to Redis cut (its proxy resets
    /// every connection); then it comes back.
    DocsDown,
    /// A write the cache did not see: every cached entry is stale until the cache is refilled.
    CacheStale,
    /// The JWT key pair expires: the verifier trusts a new key before the issuer signs with it,
    /// so no token verifies until the issuer rotates and clients fetch new tokens.
    JwtKeys,
    /// The introspection endpoint's proxy swallows every request.
    IntrospectBlackhole,
    /// The RBAC policy store goes offline.
    PolicyOffline,
}

impl Fault {
    /// Every fault, by its name on the command line.
    pub const ALL: [(&'static str, Fault); 10] = [
        ("rest-reset", Fault::RestReset),
        ("graphql-reset", Fault::GraphqlReset),
        ("ws-slow", Fault::WsSlow),
        ("http-down", Fault::HttpDown),
        ("sql-lock", Fault::SqlLock),
        ("docs-down", Fault::DocsDown),
        ("cache-stale", Fault::CacheStale),
        ("jwt-keys", Fault::JwtKeys),
        ("introspect-blackhole", Fault::IntrospectBlackhole),
        ("policy-offline", Fault::PolicyOffline),
    ];

    /// The default schedule: one fault of each agent kind's path, and a whole service down.
    pub const DEFAULT: [Fault; 6] =
        [Fault::RestReset, Fault::WsSlow, Fault::SqlLock, Fault::CacheStale, Fault::JwtKeys, Fault::HttpDown];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, f)| *f == self).map_or("?", |(n, _)| n)
    }

    /// The fault named `name` (`sqlite-lock` is the former name of `sql-lock`).
    pub fn parse(name: &str) -> Result<Fault, String> {
        let name = if name == "sqlite-lock" { "sql-lock" } else { name };
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown fault {name:?}: the faults are {}", names.join(", "))
        })
    }

    /// The fault that breaks the agent named `agent` (its path, store or key).
    pub fn breaking(agent: &str) -> Result<Fault, String> {
        Ok(match agent {
            "REST" => Fault::RestReset,
            "GraphQL" => Fault::GraphqlReset,
            "WebSocket" => Fault::WsSlow,
            "SQL" => Fault::SqlLock,
            "NoSQL" => Fault::DocsDown,
            "Cache" => Fault::CacheStale,
            "JWT" => Fault::JwtKeys,
            "OAuth" => Fault::IntrospectBlackhole,
            "RBAC" => Fault::PolicyOffline,
            _ => {
                return Err(format!(
                    "unknown agent {agent:?}: the agents are REST, GraphQL, WebSocket, SQL, NoSQL, Cache, JWT, OAuth, RBAC"
                ));
            }
        })
    }

    /// What it does, in words.
    pub fn what(self) -> &'static str {
        match self {
            Fault::RestReset => "the REST endpoint's proxy resets every connection",
            Fault::GraphqlReset => "the GraphQL endpoint's proxy resets every connection",
            Fault::WsSlow => "the WebSocket endpoint's proxy delays every frame by 400 ms",
            Fault::HttpDown => "the HTTP service stops (REST, GraphQL, WebSocket and introspection), then restarts",
            Fault::SqlLock => {
                "a writer holds an exclusive lock on the orders table (the SQLite file, or LOCK TABLE in PostgreSQL)"
            }
            Fault::DocsDown => "the document store goes: redb closed, or the path to Redis cut; then back",
            Fault::CacheStale => "a write behind the cache's back: every entry is stale until the cache is refilled",
            Fault::JwtKeys => "the JWT key pair expires: the verifier trusts a new key before the issuer signs with it",
            Fault::IntrospectBlackhole => "the introspection endpoint's proxy swallows every request",
            Fault::PolicyOffline => "the RBAC policy store goes offline",
        }
    }

    /// Whether it acts on a service that clients in other processes share (the HTTP service,
    /// its proxies, the SQLite file, the key pair whose key set and tokens the service hands
    /// out), rather than on the Rust agents' own state (the document store, the cache, the RBAC
    /// store).
    pub fn shared(self) -> bool {
        matches!(
            self,
            Fault::RestReset
                | Fault::GraphqlReset
                | Fault::WsSlow
                | Fault::HttpDown
                | Fault::SqlLock
                | Fault::JwtKeys
                | Fault::IntrospectBlackhole
        )
    }

    /// The domain it hits, and the agents whose path it breaks.
    pub fn target(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Fault::RestReset => ("API", &["REST"]),
            Fault::GraphqlReset => ("API", &["GraphQL"]),
            Fault::WsSlow => ("API", &["WebSocket"]),
            Fault::HttpDown => ("API", &["REST", "GraphQL", "WebSocket", "OAuth"]),
            Fault::SqlLock => ("Database", &["SQL"]),
            Fault::DocsDown => ("Database", &["NoSQL"]),
            Fault::CacheStale => ("Database", &["Cache"]),
            Fault::JwtKeys => ("Auth", &["JWT"]),
            Fault::IntrospectBlackhole => ("Auth", &["OAuth"]),
            Fault::PolicyOffline => ("Auth", &["RBAC"]),
        }
    }
}

/// The services and switches the faults act on.
pub struct World {
    /// The HTTP service.
    pub http: HttpService,
    /// The REST endpoint's proxy.
    pub rest: Proxy,
    /// The GraphQL endpoint's proxy.
    pub graphql: Proxy,
    /// The WebSocket endpoint's proxy.
    pub websocket: Proxy,
    /// The introspection endpoint's proxy.
    pub introspect: Proxy,
    /// The Database domain's stores.
    pub stores: Arc<Stores>,
    /// The Auth domain's keys, tokens and policy.
    pub auth: Arc<Auth>,
    /// The application's runtime.
    pub rt: tokio::runtime::Handle,
    /// The servers in place of the embedded stores, if any.
    pub servers: Servers,
    /// The SQLite lock holder's release, while it holds the lock.
    sqlite_lock: Mutex<Option<mpsc::Sender<()>>>,
}

impl World {
    /// The world of these services.
    pub fn new(
        http: HttpService,
        proxies: [Proxy; 4],
        stores: Arc<Stores>,
        auth: Arc<Auth>,
        servers: Servers,
        rt: tokio::runtime::Handle,
    ) -> Self {
        let [rest, graphql, websocket, introspect] = proxies;
        Self { http, rest, graphql, websocket, introspect, stores, auth, servers, rt, sqlite_lock: Mutex::new(None) }
    }

    /// Starts `fault`.
    pub fn start(&self, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::RestReset => self.rest.set_mode(Mode::Reset),
            Fault::GraphqlReset => self.graphql.set_mode(Mode::Reset),
            Fault::WsSlow => self.websocket.set_delay(Duration::from_millis(400)),
            Fault::HttpDown => self.http.stop(),
            Fault::SqlLock => {
                if !self.servers.lock_sql(&self.rt, true)? {
                    self.lock_sqlite()?;
                }
            }
            Fault::DocsDown => {
                if !self.servers.cut_docs(true) {
                    self.stores.close_docs();
                }
            }
            Fault::CacheStale => self.stores.write_behind_cache(),
            Fault::JwtKeys => self.auth.expire_keys()?,
            Fault::IntrospectBlackhole => self.introspect.set_mode(Mode::Blackhole),
            Fault::PolicyOffline => self.auth.set_policy_online(false),
        }
        Ok(())
    }

    /// Ends `fault`: what an operator (or the clients) would do.
    pub fn end(&self, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::RestReset => self.rest.set_mode(Mode::Pass),
            Fault::GraphqlReset => self.graphql.set_mode(Mode::Pass),
            Fault::WsSlow => self.websocket.set_delay(Duration::ZERO),
            Fault::HttpDown => {
                self.http.start()?;
            }
            Fault::SqlLock => {
                if !self.servers.lock_sql(&self.rt, false)? {
                    drop(self.sqlite_lock.lock().expect("lock").take());
                }
            }
            Fault::DocsDown => {
                if !self.servers.cut_docs(false) {
                    self.stores.open_docs()?;
                }
            }
            Fault::CacheStale => self.rt.block_on(self.stores.warm_cache()),
            Fault::JwtKeys => self.auth.rotate_issuer(),
            Fault::IntrospectBlackhole => self.introspect.set_mode(Mode::Pass),
            Fault::PolicyOffline => self.auth.set_policy_online(true),
        }
        Ok(())
    }

    /// A writer on a thread of its own takes an exclusive lock and holds it until released.
    fn lock_sqlite(&self) -> Result<(), String> {
        let path = self.stores.sqlite.clone();
        let (release, held) = mpsc::channel::<()>();
        let (locked, is_locked) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("sqlite-locker".into())
            .spawn(move || {
                let conn = match rusqlite::Connection::open(&path) {
                    Ok(c) => c,
                    Err(e) => return drop(locked.send(Err(e.to_string()))),
                };
                if let Err(e) = conn.execute_batch("BEGIN EXCLUSIVE") {
                    return drop(locked.send(Err(e.to_string())));
                }
                let _ = locked.send(Ok(()));
                let _ = held.recv();
                let _ = conn.execute_batch("ROLLBACK");
            })
            .map_err(|e| e.to_string())?;
        is_locked.recv().map_err(|_| "the SQLite locker stopped".to_owned())??;
        *self.sqlite_lock.lock().expect("lock") = Some(release);
        Ok(())
    }
}
