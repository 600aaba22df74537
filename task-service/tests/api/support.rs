//! The test harness: a real task service on `127.0.0.1:0` with a fresh database, and a client
//! that signs gateway assertions the way the gateway does.

use std::future::Future;
use std::net::SocketAddr;

use common::assertion::{AssertedRequest, SigningSecret, sign};
pub use common::clock::now_unix;
use common::config::{Env, GATEWAY_SIGNING_SECRET};
use common::headers::{GATEWAY_ASSERTION, USER_ID};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use sqlx::{Connection, PgConnection, SqliteConnection};
use task_service::Config;
use task_service::config::DATABASE_URL;
use task_service::testing::{PostgresTestDatabase, TEST_POSTGRES_URL, postgres_admin_url};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The secret the test gateway signs with (and the service verifies with).
pub const SECRET: &str = "test-signing-secret-0123456789abcdef";
/// Two users; the second tries to reach the first one's tasks.
pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test once per backend: for `async fn NAME(app: TestApp)` defined beside the
/// invocation, `backend_tests!(NAME, …)` adds `mod NAME { fn sqlite(); fn postgres(); }`. The
/// test bodies stay ordinary functions, so rustfmt formats them. `backend_tests!(env = ENV; …)`
/// starts each app with the extra variables `fn ENV() -> Vec<(&'static str, &'static str)>`
/// returns.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                $crate::support::run_on($crate::support::Backend::Sqlite, super::$name).await;
            }

            #[tokio::test]
            async fn postgres() {
                $crate::support::run_on($crate::support::Backend::Postgres, super::$name).await;
            }
        }
    )+};
    (env = $env:ident; $($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let env = super::$env();
                $crate::support::run_on_with($crate::support::Backend::Sqlite, &env, super::$name)
                    .await;
            }

            #[tokio::test]
            async fn postgres() {
                let env = super::$env();
                $crate::support::run_on_with($crate::support::Backend::Postgres, &env, super::$name)
                    .await;
            }
        }
    )+};
}
pub(crate) use backend_tests;

/// Runs `test` against a fresh app on `backend`. PostgreSQL tests pass with a note when
/// `TEST_POSTGRES_URL` is unset, and must succeed when it is set.
pub async fn run_on<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    run_on_with(backend, &[], test).await;
}

/// [`run_on`], with extra environment variables for the app.
pub async fn run_on_with<F, Fut>(backend: Backend, extra_env: &[(&str, &str)], test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    if backend == Backend::Postgres && postgres_admin_url().is_none() {
        eprintln!("skipped: {TEST_POSTGRES_URL} not set");
        return;
    }
    test(TestApp::spawn_with(backend, extra_env).await).await;
}

/// A running service with its own database, dropped (best effort) with it.
pub struct TestApp {
    pub address: SocketAddr,
    pub backend: Backend,
    /// The database's URL, for tests that look at or fill the database directly.
    pub database_url: String,
    client: reqwest::Client,
    secret: SigningSecret,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), task_service::Error>>>,
    database: Option<Database>,
}

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The raw body, for byte-for-byte comparisons.
    pub text: String,
}

impl Reply {
    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.text.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text))
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

enum Database {
    /// Removed with the directory.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// Dropped from the server when the app is.
    Postgres(PostgresTestDatabase),
}

impl TestApp {
    /// Starts the service on `backend` with a fresh, empty database.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the service with extra environment variables.
    pub async fn spawn_with(backend: Backend, extra_env: &[(&str, &str)]) -> Self {
        common::telemetry::init_for_tests();
        let (database_url, database) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                // A subdirectory that does not exist yet: the service must create it.
                let url = format!("sqlite://{}/data/tasks.db", dir.path().display());
                (url, Database::Sqlite(dir))
            }
            Backend::Postgres => {
                let database = PostgresTestDatabase::create("task_test")
                    .await
                    .expect("TEST_POSTGRES_URL is set");
                (database.url.to_string(), Database::Postgres(database))
            }
        };
        let mut env = vec![
            (DATABASE_URL.to_owned(), database_url.clone()),
            (GATEWAY_SIGNING_SECRET.to_owned(), SECRET.to_owned()),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_env(&Env::from_pairs(env)).expect("test configuration");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("local address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(task_service::run(listener, config, async {
            let _ = stopped.await;
        }));
        let mut app = Self {
            address,
            backend,
            database_url,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            secret: SigningSecret::new(SECRET).expect("long enough"),
            shutdown: Some(shutdown),
            server: Some(server),
            database: Some(database),
        };
        app.wait_until_ready().await;
        app
    }

    /// The listener is bound before `run` starts, so requests queue until the service serves;
    /// if `run` fails instead, its error is the panic message.
    async fn wait_until_ready(&mut self) {
        let ready = self.client.get(self.url("/readyz")).send();
        let server = self.server.as_mut().expect("server running");
        tokio::select! {
            reply = ready => {
                let reply = reply.expect("reach /readyz");
                assert_eq!(reply.status(), 200, "service is not ready");
            }
            result = server => panic!("the service stopped while starting: {result:?}"),
        }
    }

    /// Resolves the shutdown future and waits for `run` to return.
    pub async fn stop(&mut self) -> Result<(), task_service::Error> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = self.server.take().expect("server running");
        server.await.expect("server task did not panic")
    }

    /// Drops the PostgreSQL database under the running service, to simulate an outage.
    pub async fn drop_database(&self) {
        let Some(Database::Postgres(database)) = &self.database else {
            panic!("only a PostgreSQL test database can be dropped");
        };
        database.drop_now().await;
    }

    /// Inserts `count` tasks for `user` straight into the database (far faster than through the
    /// API): for tests that need a large table.
    pub async fn seed_tasks(&self, user: &str, count: i32, title: &str, description: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut db = SqliteConnection::connect(&self.database_url)
                    .await
                    .expect("open the SQLite file");
                sqlx::query(
                    "with recursive n(i) as (select 1 union all select i + 1 from n where i < $4) \
                     insert into tasks (user_id, title, description, created_at, updated_at) \
                     select $1, $2, $3, $5, $5 from n",
                )
                .bind(user)
                .bind(title)
                .bind(description)
                .bind(count)
                .bind("2026-01-01T00:00:00.000000+00:00")
                .execute(&mut db)
                .await
                .expect("seed tasks");
            }
            Backend::Postgres => {
                let mut db = self.postgres().await;
                sqlx::query(
                    "insert into tasks (user_id, title, description, created_at, updated_at) \
                     select $1, $2, $3, now(), now() from generate_series(1, $4)",
                )
                .bind(user)
                .bind(title)
                .bind(description)
                .bind(count)
                .execute(&mut db)
                .await
                .expect("seed tasks");
                sqlx::query("analyze tasks")
                    .execute(&mut db)
                    .await
                    .expect("analyze");
            }
        }
    }

    /// A connection of the test's own to the PostgreSQL test database.
    pub async fn postgres(&self) -> PgConnection {
        assert_eq!(self.backend, Backend::Postgres);
        PgConnection::connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    /// The URL of `path_and_query` on this app.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.address, path_and_query)
    }

    /// The unsigned HTTP client, for requests that carry no or hand-made identity headers.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request as the gateway forwards it: `X-User-Id` and a fresh assertion for exactly this
    /// method and target.
    pub fn signed(&self, user: &str, method: Method, path_and_query: &str) -> RequestBuilder {
        let assertion = self.assertion(&self.secret, now_unix(), user, &method, path_and_query);
        self.client
            .request(method, self.url(path_and_query))
            .header(USER_ID, user)
            .header(GATEWAY_ASSERTION, assertion)
    }

    /// An assertion value, signed with any secret at any time.
    pub fn assertion(
        &self,
        secret: &SigningSecret,
        unix_time: u64,
        user: &str,
        method: &Method,
        path_and_query: &str,
    ) -> String {
        sign(
            secret,
            unix_time,
            &AssertedRequest {
                method: method.as_str(),
                path_and_query,
                user_id: user,
            },
        )
    }

    /// Sends a signed request with an optional JSON body.
    pub async fn call(
        &self,
        user: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.signed(user, method, path_and_query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// Creates a task titled `title` for `user`; returns it.
    pub async fn create_task(&self, user: &str, title: &str) -> Value {
        self.create_task_with(user, serde_json::json!({ "title": title }))
            .await
    }

    /// Creates a task from a full body; returns it.
    pub async fn create_task_with(&self, user: &str, body: Value) -> Value {
        let reply = self.post_task(user, body).await;
        reply.expect_status(201);
        reply.json()
    }

    /// Posts `body` to the user's collection, whatever the outcome.
    pub async fn post_task(&self, user: &str, body: Value) -> Reply {
        self.call(user, Method::POST, &tasks_path(user), Some(body))
            .await
    }

    /// The user's task list (`query` like `?status=pending`, or empty): the array and
    /// `X-Total-Count`.
    pub async fn list(&self, user: &str, query: &str) -> (Vec<Value>, i64) {
        let reply = self.list_reply(user, query).await;
        reply.expect_status(200);
        let total = reply
            .header("x-total-count")
            .and_then(|total| total.parse().ok())
            .expect("X-Total-Count header");
        match reply.json() {
            Value::Array(tasks) => (tasks, total),
            other => panic!("list is not an array: {other}"),
        }
    }

    /// The raw list reply.
    pub async fn list_reply(&self, user: &str, query: &str) -> Reply {
        let path = format!("{}{query}", tasks_path(user));
        self.call(user, Method::GET, &path, None).await
    }

    /// Everything the user can see, as raw JSON text: for byte-for-byte before/after checks.
    pub async fn snapshot(&self, user: &str) -> String {
        let reply = self
            .list_reply(user, "?sort=created&order=asc&limit=500")
            .await;
        reply.expect_status(200);
        reply.text
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // The database goes after the server was told to stop (see PostgresTestDatabase).
        drop(self.database.take());
    }
}

/// `/api/{user}/tasks`.
pub fn tasks_path(user: &str) -> String {
    format!("/api/{user}/tasks")
}

/// `/api/{user}/tasks/{id}` for a task JSON's `id`.
pub fn task_path(user: &str, task: &Value) -> String {
    format!("{}/{}", tasks_path(user), task["id"])
}

/// Sends a request and reads the whole reply.
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("request reaches the service");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read the body");
    Reply {
        status,
        headers,
        text,
    }
}

/// The latency at `fraction` (0.99 for p99) of a sorted list, by nearest rank; zero when empty.
/// For the benches, which share this file.
#[allow(dead_code)]
pub fn percentile(sorted: &[std::time::Duration], fraction: f64) -> std::time::Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return std::time::Duration::ZERO;
    };
    sorted[(last as f64 * fraction).round() as usize]
}

/// `{"detail": message}`.
pub fn detail(message: &str) -> Value {
    serde_json::json!({ "detail": message })
}

/// A 422 body with one issue.
pub fn validation(loc: Value, msg: &str, kind: &str) -> Value {
    serde_json::json!({ "detail": [{ "loc": loc, "msg": msg, "type": kind }] })
}
