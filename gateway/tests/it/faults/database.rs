//! The database cut and restored under a running task service: 503 and `/readyz` false while
//! cut, recovery without a restart, and no write lost or applied twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};
use task_service::testing::PostgresTestDatabase;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::support::clients::User;
use crate::support::eventually;
use crate::support::servers::TaskService;
use crate::support::stack::{TestGateway, assert_still_serving};

use super::{Outcome, all_titles, reconcile, summarize};

/// How a [`CuttableLink`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Nothing listens: connections are refused, as when the database host is down.
    Refuse,
    /// Connections are accepted and closed at once, as a proxy or load balancer in front of a
    /// managed database does when the database behind it is down.
    HangUp,
}

/// A TCP forwarder in front of PostgreSQL that the test can cut (dropping every open connection)
/// and restore, so the shared server itself is never stopped.
struct CuttableLink {
    addr: SocketAddr,
    target: SocketAddr,
    hang_up: Arc<AtomicBool>,
    pipes: Arc<Mutex<JoinSet<()>>>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl CuttableLink {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forwarder");
        let link = Self {
            addr: listener.local_addr().expect("address"),
            target,
            hang_up: Arc::new(AtomicBool::new(false)),
            pipes: Arc::new(Mutex::new(JoinSet::new())),
            accept: Mutex::new(None),
        };
        *link.accept.lock().await = Some(link.accept_on(listener));
        link
    }

    fn accept_on(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let (hang_up, pipes, target) = (
            Arc::clone(&self.hang_up),
            Arc::clone(&self.pipes),
            self.target,
        );
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if hang_up.load(Ordering::SeqCst) {
                    continue;
                }
                pipes.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        })
    }

    /// Drops every open connection, then fails new ones as `how` says.
    async fn cut(&self, how: Cut) {
        match how {
            Cut::HangUp => self.hang_up.store(true, Ordering::SeqCst),
            Cut::Refuse => {
                if let Some(accept) = self.accept.lock().await.take() {
                    accept.abort();
                    let _ = accept.await;
                }
            }
        }
        self.pipes.lock().await.abort_all();
    }

    /// Forwards again, on the same port.
    async fn restore(&self) {
        self.hang_up.store(false, Ordering::SeqCst);
        let mut accept = self.accept.lock().await;
        if accept.is_none() {
            let listener = TcpListener::bind(self.addr)
                .await
                .expect("rebind forwarder");
            *accept = Some(self.accept_on(listener));
        }
    }
}

impl Drop for CuttableLink {
    fn drop(&mut self) {
        if let Ok(mut accept) = self.accept.try_lock()
            && let Some(accept) = accept.take()
        {
            accept.abort();
        }
    }
}

#[tokio::test]
async fn a_database_outage_gives_503_and_recovers_without_a_restart() {
    database_outage(Cut::Refuse).await;
}

#[tokio::test]
async fn a_database_behind_a_proxy_that_hangs_up_gives_503_too() {
    database_outage(Cut::HangUp).await;
}

/// The task service on a fresh PostgreSQL database reached through a [`CuttableLink`], behind
/// the gateway: writes before, during and after a cut of the link.
async fn database_outage(how: Cut) {
    let Some(database) = PostgresTestDatabase::create("gateway_test").await else {
        return;
    };
    let server = database.server_addr();
    let mut url = database.url.clone();
    let link = CuttableLink::start(server).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(link.addr.port())).expect("port");
    let tasks =
        TaskService::start_with_database("127.0.0.1:0".parse().expect("address"), url.as_str())
            .await;
    let gateway = TestGateway::with_shared_secret(&tasks.url()).await;
    let user = User::new(&gateway, "dbuser");
    let readyz = |client: &reqwest::Client| {
        let url = format!("{}/readyz", tasks.url());
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    let mut outcomes = Vec::new();
    let mut record = |title: String, status: u16, sent_at: Instant| {
        outcomes.push(Outcome {
            title,
            status,
            sent_at,
            latency: sent_at.elapsed(),
        });
    };
    for i in 0..3 {
        let sent_at = Instant::now();
        let title = format!("before-{i}");
        let status = user
            .call(reqwest::Method::POST, "", Some(json!({ "title": title })))
            .await
            .status();
        record(title, status.as_u16(), sent_at);
    }

    link.cut(how).await;
    let cut_at = Instant::now();
    let attempts = (0..4).map(|i| {
        let user = &user;
        async move {
            let sent_at = Instant::now();
            let title = format!("during-{i}");
            let response = user
                .call(reqwest::Method::POST, "", Some(json!({ "title": title })))
                .await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON body");
            (title, status, sent_at, body)
        }
    });
    let (during, ready_while_cut) = tokio::join!(join_all(attempts), readyz(&gateway.client));
    for (title, status, sent_at, body) in during {
        assert_eq!(status, 503, "{title} while the database is cut: {body}");
        assert!(body["detail"].is_string());
        record(title, status, sent_at);
    }
    assert_eq!(ready_while_cut, 503, "/readyz while the database is cut");

    link.restore().await;
    let restored_at = Instant::now();
    eventually("the task service to reach the database again", || async {
        readyz(&gateway.client).await == 200
    })
    .await;
    let recovered_in = restored_at.elapsed();
    for i in 0..3 {
        let sent_at = Instant::now();
        let title = format!("after-{i}");
        let status = user
            .call(reqwest::Method::POST, "", Some(json!({ "title": title })))
            .await
            .status();
        assert_eq!(status, 201, "{title}");
        record(title, status.as_u16(), sent_at);
    }
    let stored = all_titles(&user).await;
    let (lost, duplicated, unacknowledged) = reconcile(&outcomes, &stored);
    let (by_status, longest) = summarize(&outcomes);
    println!(
        "database cut ({how:?}) for {:?}: {} requests sent, by status {by_status:?}, longest latency \
         {longest:?}, /readyz {ready_while_cut} while cut, ready again {recovered_in:?} after the \
         restore (no restart); {} rows for {} 201s: writes lost {lost}, applied twice \
         {duplicated}, applied without a 201 {unacknowledged}",
        restored_at - cut_at,
        outcomes.len(),
        stored.len(),
        by_status.get(&201).copied().unwrap_or(0),
    );
    assert_eq!((lost, duplicated, unacknowledged), (0, 0, 0));
    assert!(
        longest < Duration::from_secs(8),
        "a request hung for {longest:?}"
    );
    assert_still_serving(&gateway).await;

    tasks.stop().await;
    drop(database);
}
