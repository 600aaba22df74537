//! Reading configuration from environment variables, once, at start.
//!
//! Each tier builds its typed config from an [`Env`]: `main` takes it from the process
//! environment, tests build one from a list of pairs and never touch the process environment.
//! Any bad value becomes a [`ConfigError`] naming the variable, which `main` prints as one line
//! before exiting with a non-zero status.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::assertion::{AssertionVerifier, SigningSecret};

/// A configuration value that cannot be used. Displays as `VARIABLE: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &str, message: impl fmt::Display) -> Self {
        Self {
            variable: variable.to_owned(),
            message: message.to_string(),
        }
    }
}

/// A snapshot of environment variables. A variable set to an empty string counts as unset.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, Result<String, ()>>,
}

// Values may be secrets: show only the names.
impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Env {
    /// The process environment. A variable whose value is not UTF-8 is kept as an error, reported
    /// only if the service reads it.
    pub fn from_process() -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                Some((name, value.into_string().map_err(|_| ())))
            })
            .collect();
        Self { vars }
    }

    /// An environment made of the given pairs, for tests and tools.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(name, value)| (name.into(), Ok(value.into())))
            .collect();
        Self { vars }
    }

    /// The value of `name`, trimmed; `None` when unset or empty.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ConfigError> {
        match self.vars.get(name) {
            None => Ok(None),
            Some(Err(())) => Err(ConfigError::new(name, "is not valid UTF-8")),
            Some(Ok(value)) => {
                let value = value.trim();
                Ok((!value.is_empty()).then_some(value))
            }
        }
    }

    /// The value of `name`; an error naming it when unset.
    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name)?
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    /// `name` parsed as `T`, or `None` when unset.
    pub fn parse<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(name)?
            .map(|value| {
                value
                    .parse()
                    .map_err(|err| ConfigError::new(name, format!("cannot parse {value:?}: {err}")))
            })
            .transpose()
    }

    /// `name` parsed as `T`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.parse(name)?.unwrap_or(default))
    }

    /// `name` as a list separated by commas, blank entries dropped; `None` when unset.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        Ok(self.get(name)?.map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        }))
    }
}

/// The variable holding the assertion secret, read by both tiers.
pub const GATEWAY_SIGNING_SECRET: &str = "GATEWAY_SIGNING_SECRET";
/// The variable holding the previous assertion secret, accepted by the task service during a
/// rotation.
pub const GATEWAY_SIGNING_SECRET_PREVIOUS: &str = "GATEWAY_SIGNING_SECRET_PREVIOUS";

/// The current assertion secret: required, at least 32 bytes.
pub fn signing_secret(env: &Env) -> Result<SigningSecret, ConfigError> {
    let value = env.required(GATEWAY_SIGNING_SECRET)?;
    SigningSecret::new(value).map_err(|err| ConfigError::new(GATEWAY_SIGNING_SECRET, err))
}

/// The verifier for the task service: the current secret and, when set, the previous one.
pub fn assertion_verifier(env: &Env) -> Result<AssertionVerifier, ConfigError> {
    let current = signing_secret(env)?;
    let previous = env
        .get(GATEWAY_SIGNING_SECRET_PREVIOUS)?
        .map(|value| {
            SigningSecret::new(value)
                .map_err(|err| ConfigError::new(GATEWAY_SIGNING_SECRET_PREVIOUS, err))
        })
        .transpose()?;
    Ok(AssertionVerifier::new(current, previous))
}

/// Prints `error: invalid configuration: VARIABLE: …` on one line and exits with status 2.
pub fn exit_on_error<T>(result: Result<T, ConfigError>) -> T {
    result.unwrap_or_else(|err| {
        eprintln!("error: invalid configuration: {err}");
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_counts_as_unset() {
        let env = Env::from_pairs([("A", "  ")]);
        assert_eq!(env.get("A"), Ok(None));
        assert_eq!(env.parse_or("A", 7u16), Ok(7));
    }

    #[test]
    fn parse_errors_name_the_variable() {
        let env = Env::from_pairs([("JWT_LEEWAY_SECONDS", "soon")]);
        let err = env
            .parse::<u64>("JWT_LEEWAY_SECONDS")
            .expect_err("not a number");
        assert_eq!(err.variable, "JWT_LEEWAY_SECONDS");
        assert!(
            err.to_string()
                .starts_with("JWT_LEEWAY_SECONDS: cannot parse")
        );
    }

    #[test]
    fn lists_drop_blank_entries() {
        let env = Env::from_pairs([("U", " http://a:1 ,, http://b:2 ")]);
        assert_eq!(
            env.list("U"),
            Ok(Some(vec!["http://a:1".to_owned(), "http://b:2".to_owned()]))
        );
    }

    #[test]
    fn signing_secret_is_required_and_long() {
        let missing = signing_secret(&Env::default()).expect_err("missing");
        assert_eq!(missing.variable, GATEWAY_SIGNING_SECRET);
        let short = signing_secret(&Env::from_pairs([(GATEWAY_SIGNING_SECRET, "short")]))
            .expect_err("short");
        assert_eq!(short.variable, GATEWAY_SIGNING_SECRET);
        assert!(
            signing_secret(&Env::from_pairs([(GATEWAY_SIGNING_SECRET, "s".repeat(32))])).is_ok()
        );
    }

    #[test]
    fn short_previous_secret_is_refused() {
        let env = Env::from_pairs([
            (GATEWAY_SIGNING_SECRET, "s".repeat(32)),
            (GATEWAY_SIGNING_SECRET_PREVIOUS, "old".to_owned()),
        ]);
        let err = assertion_verifier(&env).expect_err("short previous");
        assert_eq!(err.variable, GATEWAY_SIGNING_SECRET_PREVIOUS);
    }

    #[test]
    fn debug_shows_names_only() {
        let env = Env::from_pairs([("SECRET", "hunter2")]);
        assert!(!format!("{env:?}").contains("hunter2"));
    }
}
