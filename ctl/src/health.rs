//! Health of one instance as `status`, `instances` and the dashboard show it: the broker by a TCP
//! connect to its port, every other service by its `/health` endpoint (naming the checks that fail).

use std::time::Duration;

use crate::runtime::InstanceInfo;
use crate::spec::Probe;

/// Whether the instance on `port` passes its readiness probe (an HTTP path answers 2xx, or the
/// broker serves a Kafka ApiVersions request: it accepts connections before it serves).
pub async fn ready(http: &reqwest::Client, port: u16, probe: Probe) -> bool {
    match probe {
        Probe::Http(path) => {
            let url = format!("http://127.0.0.1:{port}{path}");
            matches!(http.get(url).send().await, Ok(r) if r.status().is_success())
        }
        Probe::Kafka => {
            let addr = format!("127.0.0.1:{port}");
            crate::wire::api_versions(&addr, Duration::from_millis(800)).await.is_ok()
        }
    }
}

/// `up`, `down (postgres,kafka)`, `unreachable`, or `-` for an instance that is not running.
pub async fn probe(http: &reqwest::Client, i: &InstanceInfo, timeout: Duration) -> String {
    if !i.state.is_alive() {
        return "-".to_string();
    }
    if i.service == "broker" {
        let ok = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", i.port)))
            .await
            .is_ok_and(|r| r.is_ok());
        return if ok { "up" } else { "down" }.to_string();
    }
    match http.get(format!("http://127.0.0.1:{}/health", i.port)).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() => "up".into(),
        Ok(r) => {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let down: Vec<String> = body["checks"]
                .as_object()
                .map(|m| m.iter().filter(|(_, v)| v["status"] != "up").map(|(k, _)| k.clone()).collect())
                .unwrap_or_default();
            format!("down ({})", down.join(","))
        }
        Err(_) => "unreachable".into(),
    }
}

/// The `/metrics` page of each of `instances` (every one is asked at once; one that does not
/// answer 2xx within a second is left out).
pub async fn metrics_pages<'a>(
    http: &reqwest::Client,
    instances: impl IntoIterator<Item = &'a InstanceInfo>,
) -> Vec<(&'a InstanceInfo, String)> {
    let targets: Vec<&InstanceInfo> = instances.into_iter().collect();
    let pages = futures::future::join_all(targets.iter().map(|i| async move {
        let r = http.get(format!("http://127.0.0.1:{}/metrics", i.port)).timeout(Duration::from_secs(1)).send().await;
        match r {
            Ok(r) if r.status().is_success() => r.text().await.ok(),
            _ => None,
        }
    }))
    .await;
    targets.into_iter().zip(pages).filter_map(|(i, page)| Some((i, page?))).collect()
}
