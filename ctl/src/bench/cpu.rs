//! Where a benchmark's CPU goes: user + system time of each of the platform's processes from
//! `/proc/<pid>/stat`, from the first send to the end of the drain, as a share of one core and
//! per accepted message. PostgreSQL and Redis are found by their process names (a backend that
//! starts during the run counts from zero; one that exits during it is lost, which is rare with
//! the services' pools).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// What to account for, under one name.
#[derive(Debug, Clone)]
pub enum Watched {
    /// Fixed processes (the runtime's instances of one service, this process).
    Pids { name: String, pids: Vec<u32> },
    /// Every process with this `comm` (PostgreSQL's backends, Redis).
    Comm { name: String, comm: String },
}

impl Watched {
    fn name(&self) -> &str {
        match self {
            Watched::Pids { name, .. } | Watched::Comm { name, .. } => name,
        }
    }
}

/// One process group's use over the run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuUse {
    pub process: String,
    /// Processes counted (at the end).
    pub processes: usize,
    pub cpu_seconds: f64,
    /// Over the wall time from the first send to the end of the drain.
    pub percent_of_core: f64,
    pub micros_per_message: f64,
}

/// CPU seconds per pid, with its `comm`.
type Readings = BTreeMap<u32, (String, f64)>;

/// `/proc` reports times in USER_HZ, which the kernel fixes at 100 on every architecture Linux
/// exposes it on (it is not the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// `comm` and utime + stime in seconds of `/proc/<pid>/stat`.
fn parse_stat(stat: &str, tick: f64) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // After the comm: field 3 (state) first; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / tick))
}

fn read_all() -> Readings {
    let mut out = Readings::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(r) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parse_stat(&s, USER_HZ))
        {
            out.insert(pid, r);
        }
    }
    out
}

/// Started before the first send; [`CpuMeter::finish`] after the drain.
pub struct CpuMeter {
    watched: Vec<Watched>,
    start: Readings,
    at: Instant,
}

impl CpuMeter {
    pub fn start(watched: &[Watched]) -> Self {
        Self {
            watched: watched.to_vec(),
            start: if watched.is_empty() { Readings::new() } else { read_all() },
            at: Instant::now(),
        }
    }

    /// Each group's use since the start; `messages` accepted in the run.
    pub fn finish(self, messages: u64) -> Vec<CpuUse> {
        if self.watched.is_empty() {
            return Vec::new();
        }
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let end = read_all();
        self.watched
            .iter()
            .map(|w| {
                let pids: Vec<u32> = match w {
                    Watched::Pids { pids, .. } => pids.iter().copied().filter(|p| end.contains_key(p)).collect(),
                    Watched::Comm { comm, .. } => end.iter().filter(|(_, (c, _))| c == comm).map(|(p, _)| *p).collect(),
                };
                let cpu: f64 = pids
                    .iter()
                    .map(|p| end[p].1 - self.start.get(p).map(|(_, s)| *s).unwrap_or(0.0))
                    .map(|d| d.max(0.0))
                    .sum();
                CpuUse {
                    process: w.name().to_string(),
                    processes: pids.len(),
                    cpu_seconds: cpu,
                    percent_of_core: cpu / wall * 100.0,
                    micros_per_message: if messages > 0 { cpu / messages as f64 * 1e6 } else { 0.0 },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_stat(line, 100.0), Some(("tokio runtime".to_string(), 3.0)));
        assert_eq!(parse_stat("garbage", 100.0), None);
    }

    #[test]
    fn this_process_is_measured() {
        let me = vec![Watched::Pids { name: "me".into(), pids: vec![std::process::id()] }];
        let meter = CpuMeter::start(&me);
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = meter.finish(100);
        assert_eq!(used[0].processes, 1);
        assert!(used[0].cpu_seconds > 0.05, "{used:?}");
        assert!(used[0].micros_per_message > 500.0, "{used:?}");
    }
}
