//! What the console's benchmarks time with: this process's CPU, and percentiles of a few samples.

use serde::Serialize;

/// User + system CPU of this process, all threads, in seconds.
pub fn cpu_seconds() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(r) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(r.user_time()) + t(r.system_time())
        }
        Err(_) => 0.0,
    }
}

/// p50 / p95 / max of some samples (milliseconds, say).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; all zero for no samples.
    pub fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self { p50: 0.0, p95: 0.0, max: 0.0 };
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Self { p50: at(0.5), p95: at(0.95), max: v[v.len() - 1] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.max), (51.0, 95.0, 100.0));
        assert_eq!(Percentiles::of(vec![]).max, 0.0);
    }
}
