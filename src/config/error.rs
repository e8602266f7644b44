//! Configuration errors: each names its key, so a typo fails the deployment instead of
//! weakening it, and the checks of independent keys are all reported at once.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.problem)
    }
}

pub fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// The errors of one validation pass. Each key is read on its own, so one bad value hides
/// no other: a failed read records its error and goes on with a stand-in.
#[derive(Debug, Default)]
pub struct Errors(Vec<ConfigError>);

impl Errors {
    /// `r`'s value, or `fallback` with the error recorded.
    pub fn or<T>(&mut self, r: Result<T, ConfigError>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            self.0.push(e);
            fallback
        })
    }

    /// `r`'s value, or `None` with the error recorded.
    pub fn ok<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// A whole group's result, its errors recorded.
    pub fn group<T>(&mut self, r: Result<T, Vec<ConfigError>>) -> Option<T> {
        r.map_err(|e| self.0.extend(e)).ok()
    }

    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `value` if nothing was recorded, else every error.
    pub fn done<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}
