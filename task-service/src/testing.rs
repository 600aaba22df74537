//! Test support shared by this crate's tests and the gateway's: a database of its own for each
//! test, on the PostgreSQL server named by `TEST_POSTGRES_URL`. Built only with the `testing`
//! feature, which only dev-dependencies turn on.
//!
//! When the variable is unset, [`PostgresTestDatabase::create`] says the test is skipped and
//! returns `None`; when it is set, the server must be there, and any failure fails the test.

use std::net::SocketAddr;

use sqlx::{Connection, PgConnection};

/// The variable naming the server on which tests create their databases.
pub const TEST_POSTGRES_URL: &str = "TEST_POSTGRES_URL";

/// The server given by `TEST_POSTGRES_URL`, or `None` when it is unset or empty.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var(TEST_POSTGRES_URL)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A fresh database, dropped (best effort, closing its connections) when this value is.
pub struct PostgresTestDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL: the server's URL with the database name as its path.
    pub url: url::Url,
}

impl PostgresTestDatabase {
    /// Creates a database named `{prefix}_{random}`; `None`, after saying the test is skipped,
    /// when `TEST_POSTGRES_URL` is unset.
    pub async fn create(prefix: &str) -> Option<Self> {
        let Some(admin_url) = postgres_admin_url() else {
            eprintln!("skipped: {TEST_POSTGRES_URL} not set");
            return None;
        };
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        run_admin(&admin_url, &format!("create database \"{name}\"")).await;
        let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// The server's address, for a forwarder placed in front of it.
    pub fn server_addr(&self) -> SocketAddr {
        self.url
            .socket_addrs(|| Some(5432))
            .expect("TEST_POSTGRES_URL resolves")
            .into_iter()
            .next()
            .expect("TEST_POSTGRES_URL has an address")
    }

    /// Drops the database now, even under a service still using it: a database outage.
    pub async fn drop_now(&self) {
        run_admin(&self.admin_url, &self.drop_statement()).await;
    }

    fn drop_statement(&self) -> String {
        // `with (force)` closes the connections a stopping service may still hold.
        format!("drop database if exists \"{}\" with (force)", self.name)
    }
}

impl Drop for PostgresTestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: use a thread with a runtime of its own.
        let (admin_url, statement) = (self.admin_url.clone(), self.drop_statement());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Runs one statement on the server's administrative connection; panics on failure.
async fn run_admin(admin_url: &str, statement: &str) {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"));
    let _ = admin.close().await;
}
