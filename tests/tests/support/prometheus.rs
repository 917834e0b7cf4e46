//! A real Prometheus (Debian's `prometheus` package) for the alert tests: it scrapes the jobs it
//! is given every second and evaluates the rules `chat4allctl alerts emit` wrote, so a test sees
//! an alert go pending, firing and resolved in `/api/v1/alerts`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The prometheus binary on PATH; None (the test skips) only outside CI.
pub fn find() -> Result<Option<PathBuf>> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("prometheus")).find(|p| p.is_file()));
    match found {
        Some(p) => Ok(Some(p)),
        None if std::env::var_os("CI").is_some() => {
            bail!("prometheus is not installed (apt-get install prometheus; scripts/bootstrap.sh does it)")
        }
        None => {
            eprintln!("SKIPPED: prometheus is not installed (apt-get install prometheus); under CI this fails");
            Ok(None)
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The port of a URL such as `http://127.0.0.1:9308/metrics`.
pub fn port_of(url: &str) -> Result<u16> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| anyhow!("no port in {url}"))
}

/// A scrape job: loopback ports, each with the `instance` label it gets (None: the address).
pub struct Job {
    pub name: String,
    pub targets: Vec<(u16, Option<String>)>,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Prometheus {
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `rules` over `jobs` (scraped and evaluated every second) and waits
    /// until it is ready.
    pub async fn start(bin: &Path, rules: &str, jobs: &[Job]) -> Result<Self> {
        let dir = std::env::temp_dir().join(chat4all_tests::unique("chat4all-prometheus"));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        std::fs::write(dir.0.join("rules.yml"), rules)?;
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n",
        );
        for job in jobs {
            config.push_str(&format!("  - job_name: {}\n    honor_labels: true\n    static_configs:\n", job.name));
            for (port, instance) in &job.targets {
                config.push_str(&format!("      - targets: [\"127.0.0.1:{port}\"]\n"));
                if let Some(i) = instance {
                    config.push_str(&format!("        labels: {{instance: {i}}}\n"));
                }
            }
        }
        std::fs::write(dir.0.join("prometheus.yml"), &config)?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.0.join("prometheus.log"))?;
        let child = tokio::process::Command::new(bin)
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting prometheus")?;
        let p = Self {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = p.http.get(format!("{}/-/ready", p.base)).send().await {
                if r.status().is_success() {
                    return Ok(p);
                }
            }
            if Instant::now() > deadline {
                bail!("prometheus did not become ready in 30 s:\n{}", p.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// Active alerts: (alertname, state, labels).
    pub async fn alerts(&self) -> Result<Vec<(String, String, Value)>> {
        let v: Value = self.http.get(format!("{}/api/v1/alerts", self.base)).send().await?.json().await?;
        let list = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
        Ok(list
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or_default().to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                    a["labels"].clone(),
                )
            })
            .collect())
    }

    /// The state of `alert` for the series whose labels `which` accepts: "firing", "pending"
    /// or None.
    pub async fn state(&self, alert: &str, which: &dyn Fn(&Value) -> bool) -> Result<Option<String>> {
        Ok(self.alerts().await?.into_iter().find(|(name, _, labels)| name == alert && which(labels)).map(|(_, s, _)| s))
    }

    /// One instant query's first value.
    pub async fn query(&self, q: &str) -> Result<Option<f64>> {
        let v: Value =
            self.http.get(format!("{}/api/v1/query", self.base)).query(&[("query", q)]).send().await?.json().await?;
        Ok(v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok()))
    }

    /// Waits until every alert of `alerts` (on the series `which` accepts) is in `want`
    /// (Some("firing"), or None = not active); how long that took.
    pub async fn wait_for(
        &self,
        alerts: &[&str],
        which: &dyn Fn(&Value) -> bool,
        want: Option<&str>,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let mut states = Vec::new();
            for a in alerts {
                states.push(self.state(a, which).await?);
            }
            if states.iter().all(|s| s.as_deref() == want) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "after {timeout:?}, alerts {alerts:?} are {states:?}, expected {want:?}; all active: {:?}",
                    self.alerts().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
