//! Errors with the exit code they map to (ripgrep's convention: 0 ok, 1 condition not met, 2 error).

/// An operator error: bad input or an unusable environment. Exit code 2, nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A check that ran fine but whose condition does not hold (a `--wait-for` that timed out,
/// a drill criterion that failed). Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConditionNotMet(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}
