//! The HTTP service the API domain and the OAuth agent call: one axum server with a REST
//! endpoint, a GraphQL endpoint (async-graphql) and a WebSocket endpoint over the same orders,
//! an RFC 7662 token introspection endpoint, the JWT verifier's key set (RFC 7517, at
//! `/.well-known/jwks.json`) and the users' current tokens (`/tokens`). It runs on a runtime of
//! its own, so that it can be stopped (every connection with it) and started again on the same
//! port, as a service's process would be.

use crate::auth::Auth;
use crate::data::{ORDERS, Order, order};
use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use oauth2::basic::BasicTokenType;
use oauth2::{EmptyExtraTokenFields, Scope, StandardTokenIntrospectionResponse};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// An introspection response (RFC 7662), as oauth2 types it.
pub type Introspection = StandardTokenIntrospectionResponse<EmptyExtraTokenFields, BasicTokenType>;

fn lookup(id: u64) -> Option<Order> {
    (1..=ORDERS).contains(&id).then(|| order(id))
}

struct Query;

#[Object]
impl Query {
    /// The order with this id.
    async fn order(&self, id: u64) -> Option<Order> {
        lookup(id)
    }
}

async fn rest(Path(id): Path<u64>) -> impl IntoResponse {
    match lookup(id) {
        Some(o) => Json(o).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn ws(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(serve_ws)
}

/// Each text message is an order id; the answer is the order as JSON, or `null`.
async fn serve_ws(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(t) => {
                let found = t.as_str().trim().parse().ok().and_then(lookup);
                serde_json::to_string(&found).expect("an order serializes")
            }
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(Message::Text(reply.into())).await.is_err() {
            break;
        }
    }
}

#[derive(serde::Deserialize)]
struct IntrospectForm {
    token: String,
}

async fn introspect(State(auth): State<Arc<Auth>>, Form(f): Form<IntrospectForm>) -> Json<Introspection> {
    let mut r = Introspection::new(false, EmptyExtraTokenFields {});
    if let Some(i) = auth.introspect(&f.token) {
        r.set_active(true);
        r.set_sub(Some(i.sub));
        r.set_scopes(Some(i.scope.into_iter().map(Scope::new).collect()));
        r.set_token_type(Some(BasicTokenType::Bearer));
    }
    Json(r)
}

async fn jwks(State(auth): State<Arc<Auth>>) -> impl IntoResponse {
    match auth.jwks() {
        Ok(set) => Json(set).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Each user's current token (as the issuer would hand them out at login): for clients in other
/// processes, which fetch them again after the issuer rotates its key.
async fn tokens(State(auth): State<Arc<Auth>>) -> impl IntoResponse {
    match auth.tokens() {
        Ok(t) => Json(t).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

fn router(auth: Arc<Auth>) -> Router {
    let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
    Router::new()
        .route("/orders/{id}", get(rest))
        .route_service("/graphql", async_graphql_axum::GraphQL::new(schema))
        .route("/ws", get(ws))
        .route("/introspect", post(introspect))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/tokens", get(tokens))
        .route("/health", get(|| async { "ok" }))
        .with_state(auth)
}

/// The HTTP service: started, stopped and started again on one address.
pub struct HttpService {
    addr: Mutex<SocketAddr>,
    auth: Arc<Auth>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl HttpService {
    /// A service on `127.0.0.1`, not yet started.
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { addr: Mutex::new(SocketAddr::from(([127, 0, 0, 1], 0))), auth, runtime: Mutex::new(None) }
    }

    /// Its address (the port is known once started).
    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock().expect("addr")
    }

    /// Starts it (on a free port the first time, the same port after): its address.
    pub fn start(&self) -> Result<SocketAddr, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("http-service")
            .enable_all()
            .build()
            .map_err(|e| format!("the HTTP service's runtime: {e}"))?;
        let want = self.addr();
        let (tx, rx) = std::sync::mpsc::channel();
        let app = router(self.auth.clone());
        rt.spawn(async move {
            let bound = (|| {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.set_reuseaddr(true)?;
                s.bind(want)?;
                s.listen(1024)
            })();
            match bound {
                Ok(listener) => {
                    let _ = tx.send(listener.local_addr());
                    let _ = axum::serve(listener, app).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let addr = rx
            .recv()
            .map_err(|_| "the HTTP service's runtime stopped".to_owned())?
            .map_err(|e| format!("the HTTP service cannot listen on {want}: {e}"))?;
        *self.addr.lock().expect("addr") = addr;
        *self.runtime.lock().expect("runtime") = Some(rt);
        Ok(addr)
    }

    /// Stops it: the listener and every connection close at once.
    pub fn stop(&self) {
        if let Some(rt) = self.runtime.lock().expect("runtime").take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        self.stop();
    }
}
