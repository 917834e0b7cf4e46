//! Fault injection: which [`Faults`] documents are valid, and what one request suffers.
//!
//! Request-level faults (error, timeout, garbage, reset) are drawn once per request with one roll,
//! so their rates are exact shares when they add up to at most 1 (which [`validate`] demands);
//! rejections are drawn per item.

use chat4all_contract::provider::Faults;
use rand::Rng;

/// What happens to one request as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// Served normally.
    None,
    /// 503, nothing done (an outage).
    Down,
    /// 500, nothing done.
    Error,
    /// Done, then answered only after `hang_ms`.
    Timeout,
    /// Done, then answered 200 with a body that is not JSON.
    Garbage,
    /// Done, then the connection closed in the middle of the answer.
    Reset,
}

impl RequestFault {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            RequestFault::None => "none",
            RequestFault::Down => "down",
            RequestFault::Error => "error",
            RequestFault::Timeout => "timeout",
            RequestFault::Garbage => "garbage",
            RequestFault::Reset => "reset",
        }
    }

    /// Whether the items are looked at (and recorded as what was done to them).
    pub fn does_work(self) -> bool {
        !matches!(self, RequestFault::Down | RequestFault::Error)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidFaults {
    #[error("{0} must be a number from 0 to 1, got {1}")]
    Rate(&'static str, f64),
    #[error("errorRate + timeoutRate + garbageRate + resetRate must be at most 1, got {0}")]
    Sum(f64),
    #[error("{0} must be at most {1} ms, got {2}")]
    TooLong(&'static str, u64, u64),
}

/// Longest latency or hang accepted (10 minutes): a typo should not hang a connector for days.
pub const MAX_MS: u64 = 600_000;

pub fn validate(f: &Faults) -> Result<(), InvalidFaults> {
    let rates = [
        ("rejectRate", f.reject_rate),
        ("timeoutRate", f.timeout_rate),
        ("errorRate", f.error_rate),
        ("garbageRate", f.garbage_rate),
        ("resetRate", f.reset_rate),
    ];
    for (name, r) in rates {
        if !(0.0..=1.0).contains(&r) {
            return Err(InvalidFaults::Rate(name, r));
        }
    }
    let sum = f.error_rate + f.timeout_rate + f.garbage_rate + f.reset_rate;
    if sum > 1.0 + 1e-9 {
        return Err(InvalidFaults::Sum(sum));
    }
    for (name, ms) in [("latencyMs", f.latency_ms), ("hangMs", f.hang_ms)] {
        if ms > MAX_MS {
            return Err(InvalidFaults::TooLong(name, MAX_MS, ms));
        }
    }
    Ok(())
}

/// The fault one request suffers.
pub fn draw(f: &Faults, rng: &mut impl Rng) -> RequestFault {
    if f.down {
        return RequestFault::Down;
    }
    let total = f.error_rate + f.timeout_rate + f.garbage_rate + f.reset_rate;
    if total <= 0.0 {
        return RequestFault::None;
    }
    let roll: f64 = rng.gen();
    let mut edge = 0.0;
    for (rate, fault) in [
        (f.error_rate, RequestFault::Error),
        (f.timeout_rate, RequestFault::Timeout),
        (f.garbage_rate, RequestFault::Garbage),
        (f.reset_rate, RequestFault::Reset),
    ] {
        edge += rate;
        if roll < edge {
            return fault;
        }
    }
    RequestFault::None
}

/// Whether one item is rejected.
pub fn reject(f: &Faults, rng: &mut impl Rng) -> bool {
    f.reject_rate > 0.0 && rng.gen_bool(f.reject_rate.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_default_is_healthy_and_valid() {
        let f = Faults::default();
        assert_eq!(validate(&f), Ok(()));
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..1000).all(|_| draw(&f, &mut rng) == RequestFault::None && !reject(&f, &mut rng)));
    }

    #[test]
    fn rates_out_of_range_or_adding_past_one_are_invalid() {
        let f = Faults { reject_rate: 1.5, ..Faults::default() };
        assert_eq!(validate(&f), Err(InvalidFaults::Rate("rejectRate", 1.5)));
        let f = Faults { error_rate: -0.1, ..Faults::default() };
        assert!(validate(&f).is_err());
        let f = Faults { error_rate: f64::NAN, ..Faults::default() };
        assert!(validate(&f).is_err());
        let f = Faults { error_rate: 0.6, timeout_rate: 0.6, ..Faults::default() };
        assert!(matches!(validate(&f), Err(InvalidFaults::Sum(_))));
        let f = Faults { hang_ms: MAX_MS + 1, ..Faults::default() };
        assert!(matches!(validate(&f), Err(InvalidFaults::TooLong("hangMs", _, _))));
    }

    #[test]
    fn down_wins_and_rates_are_shares() {
        let mut rng = StdRng::seed_from_u64(7);
        let f = Faults { down: true, error_rate: 1.0, ..Faults::default() };
        assert_eq!(draw(&f, &mut rng), RequestFault::Down);
        let f = Faults { error_rate: 0.25, reset_rate: 0.25, ..Faults::default() };
        let n = 10_000;
        let draws: Vec<_> = (0..n).map(|_| draw(&f, &mut rng)).collect();
        let errors = draws.iter().filter(|d| **d == RequestFault::Error).count();
        let resets = draws.iter().filter(|d| **d == RequestFault::Reset).count();
        assert!((2_200..2_800).contains(&errors), "{errors}");
        assert!((2_200..2_800).contains(&resets), "{resets}");
        assert!(!draws.contains(&RequestFault::Timeout));
        let f = Faults { reject_rate: 0.1, ..Faults::default() };
        let rejected = (0..n).filter(|_| reject(&f, &mut rng)).count();
        assert!((800..1_200).contains(&rejected), "{rejected}");
    }
}
