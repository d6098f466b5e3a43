//! The nine agents: the seed's 3 x 3, each a deferred handler (`metafed::future_handler`) that
//! does real I/O on the application's tokio runtime and answers with real data in its reply
//! bytes. An agent's error code says what went wrong, HTTP style: 502 the service could not be
//! reached or broke the exchange, 503 a store is busy or closed, 404 not found (a cache miss),
//! 409 a stale cache entry, 401 a token that does not verify or is not active.

use crate::auth::{Auth, permissions};
use crate::data::{Order, Stores};
use crate::http::Introspection;
use crate::servers::Servers;
use futures_util::{SinkExt, StreamExt};
use metafed::{AgentSpec, OwnedRequest, future_handler};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// What a task's bytes carry to its agents (the attributes are for the classifier).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Call {
    /// The order the task reads.
    pub order: u64,
    /// The caller.
    pub user: String,
    /// What the caller does: `read`, `write` or `report`.
    pub op: String,
    /// The caller's token, where the task needs Auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The query, where the task needs the Database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// An access decision: an Auth agent's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Decision {
    /// Whom it is about.
    pub sub: String,
    /// The operation asked for.
    pub op: String,
    /// Whether it is allowed.
    pub allow: bool,
    /// Which agent decided.
    pub by: &'static str,
}

/// An agent's answer: the order's total (or 1 for an allowed decision, 0 for a denied one)
/// and the reply's bytes.
type Answer = Result<(u64, Vec<u8>), i32>;

fn call_of(req: &OwnedRequest) -> Result<Call, i32> {
    serde_json::from_slice(&req.data).map_err(|_| 400)
}

fn order_answer(o: &Order) -> Answer {
    Ok((o.total, serde_json::to_vec(o).map_err(|_| 500)?))
}

fn order_json(bytes: Vec<u8>) -> Answer {
    let o: Order = serde_json::from_slice(&bytes).map_err(|_| 502)?;
    Ok((o.total, bytes))
}

fn decision(sub: String, op: String, allow: bool, by: &'static str) -> Answer {
    let d = Decision { sub, op, allow, by };
    Ok((u64::from(d.allow), serde_json::to_vec(&d).map_err(|_| 500)?))
}

/// Where the agents reach their services (each through its own fault proxy).
pub struct Endpoints {
    /// The REST endpoint's proxy.
    pub rest: SocketAddr,
    /// The GraphQL endpoint's proxy.
    pub graphql: SocketAddr,
    /// The WebSocket endpoint's proxy.
    pub websocket: SocketAddr,
    /// The introspection endpoint's proxy.
    pub introspect: SocketAddr,
}

/// The busy timeout of the SQL agent's connections: a locked database fails the attempt after
/// this long, well inside the agent timeout.
pub const SQLITE_BUSY: Duration = Duration::from_millis(50);

/// The SQL agent: PostgreSQL when it is given, the SQLite file otherwise.
fn sql_agent(rt: &tokio::runtime::Handle, stores: &Arc<Stores>, servers: &Servers) -> AgentSpec {
    #[cfg(feature = "postgres")]
    if let Some(pg) = servers.postgres.clone() {
        return future_handler(rt.clone(), move |req| {
            let pg = pg.clone();
            async move {
                let call = call_of(&req)?;
                order_answer(&pg.read(call.order).await.map_err(|_| 503)?.ok_or(404)?)
            }
        });
    }
    let _ = servers;
    let path = stores.sqlite.clone();
    future_handler(rt.clone(), move |req| {
        let path = path.clone();
        async move {
            let call = call_of(&req)?;
            // rusqlite blocks: on a blocking thread, each with its own connection.
            let row = tokio::task::spawn_blocking(move || {
                thread_local!(static CONN: RefCell<Option<rusqlite::Connection>> = const { RefCell::new(None) });
                CONN.with_borrow_mut(|conn| {
                    if conn.is_none() {
                        let c =
                            rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                                .map_err(|_| 503)?;
                        c.busy_timeout(SQLITE_BUSY).map_err(|_| 503)?;
                        *conn = Some(c);
                    }
                    Stores::sql_read(conn.as_ref().expect("opened above"), call.order).map_err(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => 404,
                        _ => 503,
                    })
                })
            })
            .await
            .map_err(|_| 500)??;
            order_answer(&row)
        }
    })
}

/// The NoSQL agent: Redis when it is given, redb otherwise.
fn nosql_agent(rt: &tokio::runtime::Handle, stores: &Arc<Stores>, servers: &Servers) -> AgentSpec {
    #[cfg(feature = "redis")]
    if let Some(redis) = servers.redis.clone() {
        return future_handler(rt.clone(), move |req| {
            let redis = redis.clone();
            async move {
                let call = call_of(&req)?;
                order_json(redis.read(call.order).await.map_err(|_| 503)?.ok_or(404)?)
            }
        });
    }
    let _ = servers;
    let stores = stores.clone();
    future_handler(rt.clone(), move |req| {
        let stores = stores.clone();
        async move {
            let call = call_of(&req)?;
            let doc = tokio::task::spawn_blocking(move || stores.doc_read(call.order)).await.map_err(|_| 500)?;
            order_json(doc.map_err(|_| 503)?.ok_or(404)?)
        }
    })
}

/// The nine agents' specs, by domain (API, Database, Auth), each as `(name, spec)`.
pub fn agents(
    rt: &tokio::runtime::Handle,
    ends: &Endpoints,
    stores: &Arc<Stores>,
    servers: &Servers,
    auth: &Arc<Auth>,
) -> [(&'static str, [(&'static str, AgentSpec); 3]); 3] {
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build().expect("an HTTP client");
    let rest = {
        let (http, base) = (http.clone(), format!("http://{}/orders", ends.rest));
        future_handler(rt.clone(), move |req| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let call = call_of(&req)?;
                let r = http.get(format!("{base}/{}", call.order)).send().await.map_err(|_| 502)?;
                if !r.status().is_success() {
                    return Err(i32::from(r.status().as_u16()));
                }
                order_json(r.bytes().await.map_err(|_| 502)?.to_vec())
            }
        })
    };
    let graphql = {
        let (http, url) = (http.clone(), format!("http://{}/graphql", ends.graphql));
        future_handler(rt.clone(), move |req| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let call = call_of(&req)?;
                let q =
                    serde_json::json!({ "query": format!("{{ order(id: {}) {{ id user item total }} }}", call.order) });
                let r = http.post(&url).json(&q).send().await.map_err(|_| 502)?;
                if !r.status().is_success() {
                    return Err(i32::from(r.status().as_u16()));
                }
                let v: serde_json::Value = r.json().await.map_err(|_| 502)?;
                let o: Option<Order> = serde_json::from_value(v["data"]["order"].clone()).map_err(|_| 502)?;
                order_answer(&o.ok_or(404)?)
            }
        })
    };
    let websocket = {
        let url = format!("ws://{}/ws", ends.websocket);
        future_handler(rt.clone(), move |req| {
            let url = url.clone();
            async move {
                let call = call_of(&req)?;
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.map_err(|_| 502)?;
                ws.send(Message::text(call.order.to_string())).await.map_err(|_| 502)?;
                let reply = loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => break t,
                        Some(Ok(_)) => continue,
                        _ => return Err(502),
                    }
                };
                let _ = ws.close(None).await;
                let o: Option<Order> = serde_json::from_str(reply.as_str()).map_err(|_| 502)?;
                order_answer(&o.ok_or(404)?)
            }
        })
    };

    let sql = sql_agent(rt, stores, servers);
    let nosql = nosql_agent(rt, stores, servers);
    let cache = {
        let stores = stores.clone();
        future_handler(rt.clone(), move |req| {
            let stores = stores.clone();
            async move {
                let call = call_of(&req)?;
                let e = stores.cache.get(&call.order).await.ok_or(404)?;
                if e.version < stores.version() {
                    return Err(409);
                }
                order_json(e.json.to_vec())
            }
        })
    };

    let jwt = {
        let auth = auth.clone();
        future_handler(rt.clone(), move |req| {
            let auth = auth.clone();
            async move {
                let call = call_of(&req)?;
                let claims = auth.verify(call.token.as_deref().ok_or(401)?).map_err(|_| 401)?;
                let allow = permissions(&claims.role).contains(&call.op.as_str());
                decision(claims.sub, call.op, allow, "JWT")
            }
        })
    };
    let oauth = {
        let (http, url) = (http.clone(), format!("http://{}/introspect", ends.introspect));
        future_handler(rt.clone(), move |req| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let call = call_of(&req)?;
                let token = call.token.ok_or(401)?;
                // RFC 7662: the token as a form field (a JWT needs no escaping in a form).
                let r = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(format!("token={token}"))
                    .send()
                    .await
                    .map_err(|_| 502)?;
                if !r.status().is_success() {
                    return Err(i32::from(r.status().as_u16()));
                }
                let i: Introspection = r.json().await.map_err(|_| 502)?;
                use oauth2::TokenIntrospectionResponse;
                if !i.active() {
                    return Err(401);
                }
                let allow = i.scopes().is_some_and(|s| s.iter().any(|s| s.as_str() == call.op));
                decision(i.sub().unwrap_or(&call.user).to_owned(), call.op, allow, "OAuth")
            }
        })
    };
    let rbac = {
        let auth = auth.clone();
        future_handler(rt.clone(), move |req| {
            let auth = auth.clone();
            async move {
                let call = call_of(&req)?;
                let role = auth.role_of(&call.user).map_err(|_| 503)?;
                let allow = role.is_some_and(|r| permissions(&r).contains(&call.op.as_str()));
                decision(call.user, call.op, allow, "RBAC")
            }
        })
    };
    [
        ("API", [("REST", rest), ("GraphQL", graphql), ("WebSocket", websocket)]),
        ("Database", [("SQL", sql), ("NoSQL", nosql), ("Cache", cache)]),
        ("Auth", [("JWT", jwt), ("OAuth", oauth), ("RBAC", rbac)]),
    ]
}
