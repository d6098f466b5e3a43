//! The Database domain's stores on real servers, when their URLs are given: PostgreSQL
//! (tokio-postgres, feature `postgres`) in place of the SQLite file and Redis (redis-rs, feature
//! `redis`) in place of redb. Each run loads the data set into a table or key space of its own
//! (named after the process) and removes it at exit.

use crate::proxy::{Mode, Proxy};
use std::sync::Arc;

/// The SQL agent's PostgreSQL: a few connections used in turn (each pipelines its queries; one
/// the server dropped is opened again on its next use), a table of the run's own, and the lock
/// the `sql-lock` fault holds.
#[cfg(feature = "postgres")]
pub mod pg {
    use crate::data::{ORDERS, Order, order};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio_postgres::{Client, NoTls, Statement};

    /// Connections the SQL agent uses in turn.
    const CONNECTIONS: usize = 4;

    /// A PostgreSQL database holding the run's orders.
    pub struct Postgres {
        url: String,
        /// The run's table.
        pub table: String,
        /// The SQL agent's connections, each with its prepared read; one the server dropped is
        /// opened again on its next use.
        clients: Vec<Mutex<Arc<(Client, Statement)>>>,
        next: AtomicUsize,
        /// The connection holding `LOCK TABLE` while the fault is on.
        locker: Mutex<Option<Client>>,
    }

    /// A connection for the SQL agent: short lock and statement timeouts (a locked table fails
    /// the read after 50 ms, well inside the agent timeout, as SQLite's busy timeout does) and
    /// the read prepared.
    async fn reader(url: &str, table: &str) -> Result<(Client, Statement), String> {
        let e = |e: tokio_postgres::Error| format!("PostgreSQL: {e}");
        let c = connect(url).await?;
        c.batch_execute("SET lock_timeout = '50ms'; SET statement_timeout = '150ms'").await.map_err(e)?;
        let read =
            c.prepare(&format!("SELECT id, \"user\", item, total FROM {table} WHERE id = $1")).await.map_err(e)?;
        Ok((c, read))
    }

    async fn connect(url: &str) -> Result<Client, String> {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(|e| format!("--postgres {url}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    impl Postgres {
        /// Connects (on the current tokio runtime), creates the run's table and loads the
        /// orders into it.
        pub async fn open(url: &str) -> Result<Self, String> {
            let table = format!("metafed_orders_{}", crate::servers::run_id());
            let setup = connect(url).await?;
            let e = |e: tokio_postgres::Error| format!("PostgreSQL: {e}");
            setup
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGINT PRIMARY KEY, \"user\" TEXT NOT NULL, \
                     item TEXT NOT NULL, total BIGINT NOT NULL)"
                ))
                .await
                .map_err(e)?;
            let insert = setup.prepare(&format!("INSERT INTO {table} VALUES ($1, $2, $3, $4)")).await.map_err(e)?;
            setup.batch_execute("BEGIN").await.map_err(e)?;
            for id in 1..=ORDERS {
                let o = order(id);
                setup.execute(&insert, &[&(o.id as i64), &o.user, &o.item, &(o.total as i64)]).await.map_err(e)?;
            }
            setup.batch_execute("COMMIT").await.map_err(e)?;
            let mut clients = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                clients.push(Mutex::new(Arc::new(reader(url, &table).await?)));
            }
            Ok(Self { url: url.to_owned(), table, clients, next: AtomicUsize::new(0), locker: Mutex::new(None) })
        }

        /// Reads order `id`: the order, `None` when there is none, or why not.
        pub async fn read(&self, id: u64) -> Result<Option<Order>, String> {
            let slot = &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()];
            let mut conn = slot.lock().expect("connection").clone();
            if conn.0.is_closed() {
                // The server dropped it (a restart, an idle timeout): this read opens another.
                conn = Arc::new(reader(&self.url, &self.table).await?);
                *slot.lock().expect("connection") = conn.clone();
            }
            let (c, read) = &*conn;
            let row = c.query_opt(read, &[&(id as i64)]).await.map_err(|e| e.to_string())?;
            Ok(row.map(|r| Order {
                id: r.get::<_, i64>(0) as u64,
                user: r.get(1),
                item: r.get(2),
                total: r.get::<_, i64>(3) as u64,
            }))
        }

        /// Another connection takes `ACCESS EXCLUSIVE` on the table and holds it.
        pub async fn lock(&self) -> Result<(), String> {
            let c = connect(&self.url).await?;
            c.batch_execute(&format!("BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", self.table))
                .await
                .map_err(|e| format!("PostgreSQL LOCK TABLE: {e}"))?;
            *self.locker.lock().expect("locker") = Some(c);
            Ok(())
        }

        /// Releases the lock.
        pub async fn unlock(&self) -> Result<(), String> {
            let c = self.locker.lock().expect("locker").take();
            if let Some(c) = c {
                c.batch_execute("ROLLBACK").await.map_err(|e| format!("PostgreSQL ROLLBACK: {e}"))?;
            }
            Ok(())
        }

        /// Drops the run's table (releasing the lock first, if the fault holds it).
        pub async fn remove(&self) -> Result<(), String> {
            let unlocked = self.unlock().await;
            let c = connect(&self.url).await?;
            c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
                .await
                .map_err(|e| format!("PostgreSQL DROP TABLE {}: {e}", self.table))?;
            unlocked
        }
    }
}

/// The NoSQL agent's Redis: the run's documents under a prefix of its own, read through the
/// fault proxy in front of the server (the `docs-down` fault cuts that path).
#[cfg(feature = "redis")]
pub mod rd {
    use crate::data::{ORDERS, order};
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo};
    use std::net::SocketAddr;
    use std::time::Duration;

    /// A Redis server holding the run's documents.
    pub struct Redis {
        /// The keys' prefix: `metafed:<pid>:order:`.
        pub prefix: String,
        /// Where the server is (the proxy's upstream).
        pub server: SocketAddr,
        url: String,
        via_proxy: Option<ConnectionManager>,
    }

    fn e(url: &str) -> impl Fn(redis::RedisError) -> String + '_ {
        move |err| format!("--redis {url}: {err}")
    }

    impl Redis {
        /// Connects to the server directly and loads the documents; [`connect`](Self::connect)
        /// then opens the agent's connection through the proxy.
        pub async fn open(url: &str) -> Result<Self, String> {
            let info = url.into_connection_info().map_err(e(url))?;
            let server = match info.addr() {
                ConnectionAddr::Tcp(host, port) => tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|err| format!("--redis {url}: {err}"))?
                    .next()
                    .ok_or_else(|| format!("--redis {url}: {host} has no address"))?,
                _ => return Err(format!("--redis {url}: a plain TCP address is expected (redis://host:port)")),
            };
            let prefix = format!("metafed:{}:order:", crate::servers::run_id());
            let client = redis::Client::open(info).map_err(e(url))?;
            let mut con = client.get_multiplexed_async_connection().await.map_err(e(url))?;
            let mut pipe = redis::pipe();
            for id in 1..=ORDERS {
                pipe.set(format!("{prefix}{id}"), serde_json::to_vec(&order(id)).expect("an order serializes"))
                    .ignore();
            }
            pipe.query_async::<()>(&mut con).await.map_err(e(url))?;
            Ok(Self { prefix, server, url: url.to_owned(), via_proxy: None })
        }

        /// Opens the agent's connection through the proxy at `proxy` (reconnecting by itself
        /// after a cut, with short timeouts so that a cut path fails attempts fast).
        pub async fn connect(&mut self, proxy: SocketAddr) -> Result<(), String> {
            let info = self
                .url
                .as_str()
                .into_connection_info()
                .map_err(e(&self.url))?
                .set_addr(ConnectionAddr::Tcp(proxy.ip().to_string(), proxy.port()));
            let client = redis::Client::open(info).map_err(e(&self.url))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(100)))
                .set_response_timeout(Some(Duration::from_millis(150)))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(50));
            self.via_proxy = Some(client.get_connection_manager_with_config(config).await.map_err(e(&self.url))?);
            Ok(())
        }

        /// Reads order `id`'s document: its JSON, `None` when there is none, or why not.
        pub async fn read(&self, id: u64) -> Result<Option<Vec<u8>>, String> {
            let mut con = self.via_proxy.clone().ok_or("not connected")?;
            con.get(format!("{}{id}", self.prefix)).await.map_err(|err| err.to_string())
        }

        /// Deletes the run's documents (directly, not through the proxy).
        pub async fn remove(&self) -> Result<(), String> {
            let client = redis::Client::open(self.url.as_str()).map_err(e(&self.url))?;
            let mut con = client.get_multiplexed_async_connection().await.map_err(e(&self.url))?;
            let keys: Vec<String> = (1..=ORDERS).map(|id| format!("{}{id}", self.prefix)).collect();
            con.del::<_, ()>(keys).await.map_err(e(&self.url))
        }
    }
}

/// The servers in use in place of the embedded stores: none unless their URLs were given.
#[derive(Clone, Default)]
pub struct Servers {
    /// PostgreSQL, in place of the SQLite file.
    #[cfg(feature = "postgres")]
    pub postgres: Option<Arc<pg::Postgres>>,
    /// Redis, in place of redb.
    #[cfg(feature = "redis")]
    pub redis: Option<Arc<rd::Redis>>,
    /// The fault proxy in front of Redis (the `docs-down` fault cuts it).
    pub redis_proxy: Option<Arc<Proxy>>,
}

impl Servers {
    /// Connects to the servers at these URLs (on `rt`) and loads the data set into each.
    pub fn open(rt: &tokio::runtime::Runtime, postgres: Option<&str>, redis: Option<&str>) -> Result<Self, String> {
        #[allow(unused_mut)]
        let mut s = Self::default();
        if let Some(url) = postgres {
            #[cfg(feature = "postgres")]
            {
                s.postgres = Some(Arc::new(rt.block_on(pg::Postgres::open(url))?));
            }
            #[cfg(not(feature = "postgres"))]
            return Err(format!(
                "--postgres {url}: this build has no PostgreSQL support (build it with --features postgres)"
            ));
        }
        if let Some(url) = redis {
            #[cfg(feature = "redis")]
            {
                let (r, proxy) = rt.block_on(async {
                    let mut r = rd::Redis::open(url).await?;
                    let proxy = Proxy::start(r.server).await.map_err(|e| format!("the Redis fault proxy: {e}"))?;
                    r.connect(proxy.addr()).await?;
                    Ok::<_, String>((r, proxy))
                })?;
                s.redis = Some(Arc::new(r));
                s.redis_proxy = Some(Arc::new(proxy));
            }
            #[cfg(not(feature = "redis"))]
            return Err(format!("--redis {url}: this build has no Redis support (build it with --features redis)"));
        }
        let _ = rt;
        Ok(s)
    }

    /// Where the SQL and NoSQL agents read, in words.
    pub fn describe(&self) -> String {
        #[allow(unused_mut)]
        let (mut sql, mut docs) = ("SQLite (rusqlite)".to_owned(), "redb".to_owned());
        #[cfg(feature = "postgres")]
        if let Some(p) = &self.postgres {
            sql = format!("PostgreSQL (tokio-postgres, table {})", p.table);
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            docs = format!("Redis (redis-rs, keys {}*, through a fault proxy)", r.prefix);
        }
        format!("SQL: {sql}; documents: {docs}; cache: moka")
    }

    /// Takes the document store's path away (true), or gives it back; false when the
    /// documents are not on a server.
    pub fn cut_docs(&self, cut: bool) -> bool {
        let Some(p) = &self.redis_proxy else { return false };
        p.set_mode(if cut { Mode::Reset } else { Mode::Pass });
        true
    }

    /// Takes (true) or releases the SQL table's lock on the server: false when SQL is not on
    /// a server.
    pub fn lock_sql(&self, rt: &tokio::runtime::Handle, lock: bool) -> Result<bool, String> {
        #[cfg(feature = "postgres")]
        if let Some(p) = &self.postgres {
            if lock { rt.block_on(p.lock()) } else { rt.block_on(p.unlock()) }?;
            return Ok(true);
        }
        let _ = (rt, lock);
        Ok(false)
    }

    /// Removes the run's table and documents from the servers (each tried, whatever the
    /// other's fate).
    pub fn remove(&self, rt: &tokio::runtime::Runtime) -> Result<(), String> {
        #[allow(unused_mut)]
        let mut errors: Vec<String> = Vec::new();
        #[cfg(feature = "postgres")]
        if let Some(p) = &self.postgres
            && let Err(e) = rt.block_on(p.remove())
        {
            errors.push(e);
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis
            && let Err(e) = rt.block_on(r.remove())
        {
            errors.push(e);
        }
        let _ = rt;
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }
}

/// This run's name on the servers: the process id and a random suffix (process ids repeat
/// across containers that share a server).
#[cfg(any(feature = "postgres", feature = "redis"))]
pub fn run_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        format!("{}_{:08x}", std::process::id(), u32::from_le_bytes(r))
    })
    .clone()
}
