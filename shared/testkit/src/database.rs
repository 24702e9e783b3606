//! A database per test: created with the messaging tables and the
//! service's migrations, dropped at the end — also when the test panics
//! ([`Drop`]) — and able to refuse connections as an outage does.

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use std::future::Future;
use uuid::Uuid;

/// Where tests create their databases: `TEST_DATABASE_ADMIN_URL`, by
/// default the local `postgres` database as user `postgres`.
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test. [`TestDatabase::drop`] removes it;
/// a test that panics before that leaves it to `Drop`, which removes it
/// on a thread of its own.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    pool: PgPool,
    dropped: bool,
}

impl TestDatabase {
    /// Creates `test_<prefix>_<uuid>` with the messaging tables and `migrator`'s.
    pub async fn create(prefix: &str, migrator: &Migrator) -> anyhow::Result<Self> {
        let db = Self::messaging_only(prefix, 5).await?;
        migrator.run(&db.pool).await?;
        Ok(db)
    }

    /// Creates `test_<prefix>_<uuid>` with only the messaging tables, and a
    /// pool of up to `max_connections` on it (the messaging crate's own tests).
    pub async fn messaging_only(prefix: &str, max_connections: u32) -> anyhow::Result<Self> {
        let name = format!("test_{prefix}_{}", Uuid::now_v7().simple());
        let admin = admin_url();
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => anyhow::bail!("TEST_DATABASE_ADMIN_URL has no database path: {admin}"),
        };
        let mut conn = PgConnection::connect(&admin)
            .await
            .context("connect to PostgreSQL (TEST_DATABASE_ADMIN_URL)")?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        // From here on, a failure drops the database again (`Drop`).
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_lazy(&url)?;
        let db = Self {
            name,
            url,
            pool,
            dropped: false,
        };
        checkout_messaging::migrate(&db.pool).await?;
        Ok(db)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL, for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Makes the database refuse new connections and ends every open one
    /// (`refuse`), as an outage does — or lets connections in again.
    pub async fn refuse_connections(&self, refuse: bool) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            self.name,
            allow = !refuse
        )))
        .execute(&mut conn)
        .await?;
        if refuse {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .execute(&mut conn)
            .await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Drops the database, closing whatever still uses it.
    pub async fn drop(mut self) -> anyhow::Result<()> {
        self.pool.close().await;
        drop_database(&self.name).await?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for TestDatabase {
    /// A test that panicked never reached [`TestDatabase::drop`]: remove
    /// the database anyway, on a thread of its own (this one may be a
    /// runtime's, which cannot block).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&name))
        })
        .join();
        if !matches!(removed, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

async fn drop_database(name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(&admin_url()).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(())
}

/// Runs `test` on a fresh database (see [`TestDatabase::create`]) and drops
/// the database afterwards — also when the test fails: it runs as a task,
/// so its panic is caught, the database dropped, and the panic re-raised.
pub async fn with_database<F, Fut>(prefix: &str, migrator: &Migrator, test: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDatabase::create(prefix, migrator)
        .await
        .expect("a test database (PostgreSQL at TEST_DATABASE_ADMIN_URL)");
    let outcome = tokio::spawn(test(db.pool().clone())).await;
    db.drop().await.expect("drop the test database");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
