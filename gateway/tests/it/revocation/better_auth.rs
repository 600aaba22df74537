//! The real Better Auth, configured as the README says: signing out revokes the token at the
//! gateway within a second.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway::config::BETTER_AUTH_URL;
use serde_json::{Value, json};

use super::{ADMIN_TOKEN, PROPAGATION, assert_revoked, status, until_refused, with_file};
use crate::support::processes::{free_port, installed};
use crate::support::servers::EchoUpstream;

/// The harness in `tests/better-auth`: a real Better Auth server with the README's hooks.
struct BetterAuth {
    child: Child,
    base_url: String,
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BetterAuth {
    /// Starts it, posting revocations to `admin_url`; `None` (skipped) without node outside CI.
    fn start(admin_url: &str) -> Option<Self> {
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/better-auth");
        if !installed(
            "node",
            "better_auth_sign_out_revokes_the_token_within_a_second",
        ) {
            return None;
        }
        if !harness.join("node_modules/better-auth").exists() {
            let installed = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&harness)
                .status()
                .is_ok_and(|status| status.success());
            assert!(installed, "npm ci in {} failed", harness.display());
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&harness)
            .env("GATEWAY_ADMIN_URL", admin_url)
            .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("the harness prints its port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected harness output {line:?}"));
        Some(Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
        })
    }

    /// Signs in (after signing up, the first time); the session cookie.
    async fn sign_in(&self, client: &reqwest::Client, email: &str, sign_up: bool) -> String {
        let (path, body) = if sign_up {
            (
                "/api/auth/sign-up/email",
                json!({"email": email, "password": "correct horse battery", "name": "Alice"}),
            )
        } else {
            (
                "/api/auth/sign-in/email",
                json!({"email": email, "password": "correct horse battery"}),
            )
        };
        let response = client
            .post(format!("{}{path}", self.base_url))
            .header("origin", &self.base_url)
            .json(&body)
            .send()
            .await
            .expect("Better Auth reachable");
        assert_eq!(response.status(), 200, "{path}");
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookie| {
                cookie
                    .split(';')
                    .next()
                    .filter(|pair| pair.starts_with("better-auth.session_token="))
            })
            .expect("a session cookie")
            .to_owned()
    }

    /// The session's JWT from `/api/auth/token`, and its user id.
    async fn token(&self, client: &reqwest::Client, cookie: &str) -> (String, String) {
        let body: Value = client
            .get(format!("{}/api/auth/token", self.base_url))
            .header("cookie", cookie)
            .send()
            .await
            .expect("Better Auth reachable")
            .json()
            .await
            .expect("token JSON");
        let token = body["token"].as_str().expect("a token").to_owned();
        let payload = token.split('.').nth(1).expect("a JWT");
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .expect("base64url"),
        )
        .expect("claims JSON");
        assert!(
            claims["sid"].is_string(),
            "definePayload adds sid: {claims}"
        );
        (token, claims["sub"].as_str().expect("sub").to_owned())
    }

    async fn post(&self, client: &reqwest::Client, path: &str, cookie: &str) {
        let response = client
            .post(format!("{}{path}", self.base_url))
            .header("origin", &self.base_url)
            .header("cookie", cookie)
            .json(&json!({}))
            .send()
            .await
            .expect("Better Auth reachable");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn better_auth_sign_out_revokes_the_token_within_a_second() {
    let upstream = EchoUpstream::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    // Better Auth is told the gateway's admin address before the gateway (which needs Better
    // Auth's URL) starts there.
    let admin = free_port();
    let Some(auth) = BetterAuth::start(&format!("http://{admin}")) else {
        return;
    };
    let gateway = with_file(&upstream, &data.path().join("revocations.json"))
        .var(BETTER_AUTH_URL, auth.base_url.clone())
        .admin_at(admin)
        .start()
        .await;
    let client = reqwest::Client::new();

    let laptop = auth.sign_in(&client, "alice@example.com", true).await;
    let phone = auth.sign_in(&client, "alice@example.com", false).await;
    let (laptop_token, user) = auth.token(&client, &laptop).await;
    let (phone_token, _) = auth.token(&client, &phone).await;
    assert_eq!(status(&gateway, &user, &laptop_token).await, 200);
    assert_eq!(status(&gateway, &user, &phone_token).await, 200);

    auth.post(&client, "/api/auth/sign-out", &laptop).await;
    let lag = until_refused(&gateway, &user, &laptop_token).await;
    assert!(
        lag < PROPAGATION,
        "sign-out took {lag:?} to reach the gateway"
    );
    assert_revoked(&gateway, &user, &laptop_token).await;
    assert_eq!(
        status(&gateway, &user, &phone_token).await,
        200,
        "other session"
    );

    // "Sign out everywhere": every token of the user issued before now.
    auth.post(&client, "/api/auth/revoke-sessions", &phone)
        .await;
    until_refused(&gateway, &user, &phone_token).await;
    assert_revoked(&gateway, &user, &phone_token).await;
    // The cut-off covers the whole second it was made in (`iat` has whole seconds): a token
    // issued in the next second passes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again = auth.sign_in(&client, "alice@example.com", false).await;
    let (fresh, _) = auth.token(&client, &again).await;
    assert_eq!(
        status(&gateway, &user, &fresh).await,
        200,
        "signed in again"
    );
}
