//! The steps of one token verification, recorded when asked (`POST /explain`) and free when not.
//!
//! The verifier runs the same code either way; it hands each step's result to a [`Trace`], which
//! keeps a [`Step`] only when it was made with [`Trace::on`]. Details are built lazily, so the
//! request path (with [`Trace::off`]) formats nothing.

use serde::Serialize;

use super::TokenError;

/// The JWS header: three segments, a JSON header, an accepted `alg`.
pub const TOKEN_HEADER: &str = "token_header";
/// The key for that `alg` (the shared secret, or the JWKS key named by `kid`).
pub const KEY: &str = "key";
/// The signature over `header.payload`.
pub const SIGNATURE: &str = "signature";
/// The payload: one JSON object.
pub const CLAIMS: &str = "claims";
pub const CLAIMS_EXP: &str = "claims.exp";
pub const CLAIMS_NBF: &str = "claims.nbf";
pub const CLAIMS_IAT: &str = "claims.iat";
pub const CLAIMS_ISS: &str = "claims.iss";
pub const CLAIMS_AUD: &str = "claims.aud";
pub const CLAIMS_SUB: &str = "claims.sub";

/// Every verification step, in the order the verifier takes them.
pub const STEPS: [&str; 10] = [
    TOKEN_HEADER,
    KEY,
    SIGNATURE,
    CLAIMS,
    CLAIMS_EXP,
    CLAIMS_NBF,
    CLAIMS_IAT,
    CLAIMS_ISS,
    CLAIMS_AUD,
    CLAIMS_SUB,
];

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not taken: an earlier step failed, or the configuration does not ask for it.
    Skipped,
}

/// One step and why it went as it did. The detail never holds the token or its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// Where a verification records its steps.
#[derive(Debug, Default)]
pub struct Trace {
    steps: Option<Vec<Step>>,
}

impl Trace {
    /// Records nothing: the request path.
    pub fn off() -> Self {
        Self { steps: None }
    }

    /// Records every step taken.
    pub fn on() -> Self {
        Self {
            steps: Some(Vec::new()),
        }
    }

    /// The steps recorded, in order.
    pub fn into_steps(self) -> Vec<Step> {
        self.steps.unwrap_or_default()
    }

    /// Records a step whose detail is built only when recording.
    pub fn record(
        &mut self,
        check: &'static str,
        outcome: Outcome,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(steps) = &mut self.steps {
            steps.push(Step {
                check,
                outcome,
                detail: detail(),
            });
        }
    }

    /// Records `result` as the outcome of `check` and passes it on: on success with the detail
    /// `passed` builds, on failure with the error's own words.
    pub fn check<T>(
        &mut self,
        check: &'static str,
        result: Result<T, TokenError>,
        passed: impl FnOnce(&T) -> String,
    ) -> Result<T, TokenError> {
        match &result {
            Ok(value) => self.record(check, Outcome::Pass, || passed(value)),
            Err(error) => self.record(check, Outcome::Fail, || error.to_string()),
        }
        result
    }
}
