//! The data the federation serves, and the three stores the Database domain reads it from: an
//! SQLite file (rusqlite, blocking calls on tokio's blocking threads), an embedded document
//! store (redb) and an in-memory cache (moka).

use moka::future::Cache;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many orders the data set holds (ids 1 to `ORDERS`).
pub const ORDERS: u64 = 1000;
/// How many users own them (`u0` .. `u49`).
pub const USERS: u64 = 50;

/// One order: what every store and every API endpoint returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, async_graphql::SimpleObject)]
pub struct Order {
    /// The order's id.
    pub id: u64,
    /// Its owner.
    pub user: String,
    /// What was ordered.
    pub item: String,
    /// Its total, in cents.
    pub total: u64,
}

/// The order with id `id` (1 to [`ORDERS`]), the same in every store.
pub fn order(id: u64) -> Order {
    const ITEMS: [&str; 6] = ["keyboard", "monitor", "cable", "laptop", "chair", "lamp"];
    Order {
        id,
        user: format!("u{}", id % USERS),
        item: ITEMS[(id % ITEMS.len() as u64) as usize].to_owned(),
        total: 100 + (id * 7919) % 50_000,
    }
}

const DOCS: TableDefinition<u64, &[u8]> = TableDefinition::new("orders");

/// A cached order, with the version of the data it was read at.
#[derive(Clone)]
pub struct CacheEntry {
    /// The order as JSON.
    pub json: Arc<[u8]>,
    /// The data version it was read at; older than [`Stores::version`] means stale.
    pub version: u64,
}

/// The Database domain's three stores over one data set.
pub struct Stores {
    /// The SQLite file.
    pub sqlite: PathBuf,
    /// The document store, `None` while it is closed.
    docs: std::sync::RwLock<Option<Database>>,
    docs_path: PathBuf,
    /// The cache in front of them.
    pub cache: Cache<u64, CacheEntry>,
    /// The data's version: a write that the cache did not see bumps it.
    version: AtomicU64,
}

impl Stores {
    /// Creates the stores in `dir` and loads the data set into each.
    pub fn create(dir: &Path) -> Result<Self, String> {
        let sqlite = dir.join("orders.sqlite");
        let conn = rusqlite::Connection::open(&sqlite).map_err(|e| format!("SQLite {}: {e}", sqlite.display()))?;
        conn.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, user TEXT NOT NULL, item TEXT NOT NULL, total INTEGER NOT NULL);",
        )
        .map_err(|e| format!("SQLite schema: {e}"))?;
        {
            let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
            let mut insert = tx.prepare("INSERT INTO orders VALUES (?1, ?2, ?3, ?4)").map_err(|e| e.to_string())?;
            for id in 1..=ORDERS {
                let o = order(id);
                insert
                    .execute(rusqlite::params![o.id as i64, o.user, o.item, o.total as i64])
                    .map_err(|e| e.to_string())?;
            }
            drop(insert);
            tx.commit().map_err(|e| e.to_string())?;
        }
        let docs_path = dir.join("orders.redb");
        let docs = Database::create(&docs_path).map_err(|e| format!("redb {}: {e}", docs_path.display()))?;
        let w = docs.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = w.open_table(DOCS).map_err(|e| e.to_string())?;
            for id in 1..=ORDERS {
                let json = serde_json::to_vec(&order(id)).expect("an order serializes");
                t.insert(id, json.as_slice()).map_err(|e| e.to_string())?;
            }
        }
        w.commit().map_err(|e| e.to_string())?;
        let cache = Cache::builder().max_capacity(ORDERS).time_to_live(Duration::from_secs(3600)).build();
        Ok(Self { sqlite, docs: std::sync::RwLock::new(Some(docs)), docs_path, cache, version: AtomicU64::new(1) })
    }

    /// The data's current version.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Fills the cache with every order at the current version.
    pub async fn warm_cache(&self) {
        let v = self.version();
        for id in 1..=ORDERS {
            let json: Arc<[u8]> = serde_json::to_vec(&order(id)).expect("an order serializes").into();
            self.cache.insert(id, CacheEntry { json, version: v }).await;
        }
    }

    /// A write the cache did not see: the data's version moves on, and every cached entry is
    /// now stale (the cache still holds them).
    pub fn write_behind_cache(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads order `id` from the SQLite file with `conn` (a blocking call).
    pub fn sql_read(conn: &rusqlite::Connection, id: u64) -> rusqlite::Result<Order> {
        let mut stmt = conn.prepare_cached("SELECT id, user, item, total FROM orders WHERE id = ?1")?;
        stmt.query_row([id as i64], |r| {
            Ok(Order {
                id: r.get::<_, i64>(0)? as u64,
                user: r.get(1)?,
                item: r.get(2)?,
                total: r.get::<_, i64>(3)? as u64,
            })
        })
    }

    /// Reads order `id` from the document store (a blocking call): its JSON, or `None`.
    pub fn doc_read(&self, id: u64) -> Result<Option<Vec<u8>>, String> {
        let docs = self.docs.read().expect("docs");
        let docs = docs.as_ref().ok_or("the document store is closed")?;
        let r = docs.begin_read().map_err(|e| e.to_string())?;
        let t = r.open_table(DOCS).map_err(|e| e.to_string())?;
        Ok(t.get(id).map_err(|e| e.to_string())?.map(|v| v.value().to_vec()))
    }

    /// Closes the document store (its file stays).
    pub fn close_docs(&self) {
        self.docs.write().expect("docs").take();
    }

    /// Opens the document store again.
    pub fn open_docs(&self) -> Result<(), String> {
        let mut docs = self.docs.write().expect("docs");
        if docs.is_none() {
            *docs =
                Some(Database::open(&self.docs_path).map_err(|e| format!("redb {}: {e}", self.docs_path.display()))?);
        }
        Ok(())
    }
}
