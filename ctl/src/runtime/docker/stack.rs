//! `chat4allctl up --runtime docker` and its `down`: the stack of [`StackSpec`] as labelled
//! containers of one Compose project, on images built here ([`super::image`]).
//!
//! The containers use the host's network: PostgreSQL and Redis run on the host and listen on
//! loopback only (as every process stack expects), and the ctl, the dashboard and the tests reach
//! the broker and every instance at `127.0.0.1:<port>` the same way on both runtimes. The ports
//! are the process stack's scheme shifted by the docker stack's own offset, so the two never
//! collide. Each instance's command and environment are [`StackSpec::launch`]'s, unchanged.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use serde::Serialize;

use super::compose::Images;
use super::image::{self, ImageSpec};
use super::{
    compose_service, Container, DockerRuntime, LABEL_NUMBER, LABEL_ONEOFF, LABEL_PORT, LABEL_PROJECT, LABEL_SERVICE,
};
use crate::error::usage;
use crate::paths::DataDir;
use crate::spec::{ServiceKind, StackSpec};

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpReport {
    pub project: String,
    pub images: Vec<String>,
    pub containers: Vec<String>,
    pub seconds: f64,
}

/// The order the supervisor starts a stack in, as groups started together.
fn start_order(spec: &StackSpec, routers: u32) -> Vec<Vec<(ServiceKind, u32)>> {
    use ServiceKind::*;
    let mut groups = Vec::new();
    if spec.embedded_broker {
        groups.push(vec![(Broker, 1)]);
    }
    groups.push(vec![(WhatsappProvider, 1), (TelegramProvider, 1), (InstagramProvider, 1)]);
    groups.push(vec![(MessageService, 1)]);
    groups.push(vec![(UserService, 1), (FileService, 1)]);
    groups.push(vec![(ApiGateway, 1)]);
    groups.push(vec![(WhatsappConnector, 1), (TelegramConnector, 1), (InstagramConnector, 1)]);
    groups.push((1..=routers).map(|n| (RouterService, n)).collect());
    groups
}

/// Builds the images, then creates and starts every container, each group once the one before is
/// ready. A project that still has containers is refused (`down` first).
pub async fn up(
    rt: &DockerRuntime,
    spec: &StackSpec,
    routers: u32,
    data: &DataDir,
    token: &str,
) -> anyhow::Result<UpReport> {
    let t0 = Instant::now();
    let existing = rt.containers().await?;
    if !existing.is_empty() {
        return Err(usage(format!(
            "Compose project {:?} already has {} container(s) on {}; `chat4allctl down --runtime docker` removes them",
            rt.project(),
            existing.len(),
            rt.socket()
        )));
    }
    let images = build_images(rt, spec, data).await?;
    let mut tags = vec![images.platform.clone()];
    tags.extend(images.broker.iter().map(|(t, _)| t.clone()));
    let mut containers = Vec::new();
    for group in start_order(spec, routers) {
        let mut created = Vec::new();
        for (kind, n) in group {
            let image = match (&images.broker, kind) {
                (Some((tag, _)), ServiceKind::Broker) => tag.clone(),
                _ => images.platform.clone(),
            };
            let java = images.broker.as_ref().map(|(_, j)| j.clone());
            let c = create(rt, spec, kind, n, &image, java.as_deref(), token).await?;
            rt.docker().start_container(&c.id, None).await.with_context(|| format!("starting {}", c.instance()))?;
            created.push(c);
        }
        for r in futures::future::join_all(created.iter().map(|c| rt.wait_ready(c))).await {
            r?;
        }
        containers.extend(created.iter().map(|c| c.container_name.clone()));
    }
    let watcher = create_watcher(rt, spec, &images.platform).await?;
    rt.docker().start_container(&watcher.id, None).await.context("starting failover-1")?;
    rt.wait_ready(&watcher).await?;
    containers.push(watcher.container_name.clone());
    Ok(UpReport { project: rt.project().into(), images: tags, containers, seconds: t0.elapsed().as_secs_f64() })
}

/// The stack's images (built unless the engine has them) and, with an embedded broker, its data
/// directory formatted for the container that mounts it.
pub async fn build_images(rt: &DockerRuntime, spec: &StackSpec, data: &DataDir) -> anyhow::Result<Images> {
    let scratch = data.root().join("docker");
    // The ctl itself runs the stack's `failover watch`.
    let ctl = std::env::current_exe().context("locating chat4allctl")?;
    let bins = ImageSpec::binaries("chat4all-platform", &[&spec.server_bin, &spec.provider_bin, &ctl])?;
    let platform = image::ensure(rt.docker(), &bins, &scratch).await?;
    let mut broker = None;
    if spec.embedded_broker {
        let libs = spec.kafka_libs.clone().context("Kafka's jars")?;
        let node = spec.broker_node(1);
        let java = crate::broker::java();
        let libs2 = libs.clone();
        // Formatting runs the JVM once, here, on the directory the container mounts.
        tokio::task::spawn_blocking(move || node.ensure_formatted(&libs2)).await??;
        let jre = ImageSpec::broker("chat4all-kafka", &java, &libs)?;
        let tag = image::ensure(rt.docker(), &jre, &scratch).await?;
        broker = Some((tag, image::which(&java)?));
    }
    Ok(Images { platform, broker })
}

async fn create(
    rt: &DockerRuntime,
    spec: &StackSpec,
    kind: ServiceKind,
    n: u32,
    image: &str,
    java: Option<&std::path::Path>,
    token: &str,
) -> anyhow::Result<Container> {
    let launch = spec.launch(kind, n)?;
    let service = compose_service(kind);
    let name = format!("{}-{service}-{n}", rt.project());
    // `java` from PATH on the host is the JRE's own binary in the image.
    let program = match (kind, java) {
        (ServiceKind::Broker, Some(j)) => j.to_path_buf(),
        _ => launch.program.clone(),
    };
    let mut cmd = vec![program.to_string_lossy().into_owned()];
    cmd.extend(launch.args.iter().cloned());
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), rt.project().to_string()),
        (LABEL_SERVICE.to_string(), service.to_string()),
        (LABEL_NUMBER.to_string(), n.to_string()),
        (LABEL_ONEOFF.to_string(), "False".to_string()),
        (LABEL_PORT.to_string(), launch.port.to_string()),
    ]);
    let mut binds = Vec::new();
    if kind == ServiceKind::Broker {
        let dir = spec.broker_data.to_string_lossy().into_owned();
        binds.push(format!("{dir}:{dir}"));
    }
    if let Some((_, files)) = launch.env.iter().find(|(k, _)| k == "CHAT4ALL_FILES_DIR") {
        std::fs::create_dir_all(files).with_context(|| format!("creating {files}"))?;
        binds.push(format!("{files}:{files}"));
    }
    let mut env: Vec<String> = launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The stack's control token opens the services' admin endpoints to the control plane.
    env.push(format!("{}={token}", chat4all_contract::admin::ADMIN_TOKEN_ENV));
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        env: Some(env),
        working_dir: launch.cwd.as_ref().map(|d| d.to_string_lossy().into_owned()),
        labels: Some(labels),
        stop_timeout: Some(20),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            // The host's pid namespace: the pid a router reports with its assignment is the one
            // the engine knows, so a kill can name the dead member (crate::failover).
            pid_mode: Some("host".into()),
            binds: (!binds.is_empty()).then_some(binds),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = rt.docker().create_container(Some(opts), body).await.with_context(|| format!("creating {name}"))?;
    let inspect = rt.docker().inspect_container(&created.id, None).await?;
    Ok(Container { id: created.id, container_name: name, service: service.into(), number: n, inspect })
}

/// The stack's `failover watch` ([`super::watch`]): the ctl in the platform image, with the
/// engine's socket mounted, on the host network like the instances it watches.
async fn create_watcher(rt: &DockerRuntime, spec: &StackSpec, image: &str) -> anyhow::Result<Container> {
    let ctl = std::env::current_exe().context("locating chat4allctl")?;
    let port = spec.ports.failover_watch;
    let name = format!("{}-{WATCHER}-1", rt.project());
    let socket = rt.socket().trim_start_matches("unix://").to_string();
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), rt.project().to_string()),
        (LABEL_SERVICE.to_string(), WATCHER.to_string()),
        (LABEL_NUMBER.to_string(), "1".to_string()),
        (LABEL_ONEOFF.to_string(), "False".to_string()),
        (LABEL_PORT.to_string(), port.to_string()),
    ]);
    let env = vec![
        format!("KAFKA_BOOTSTRAP={}", spec.kafka_bootstrap),
        format!("REDIS_URL={}", spec.redis_url),
        format!("CHAT4ALL_COMPOSE_PROJECT={}", rt.project()),
        format!("DOCKER_HOST=unix://{socket}"),
    ];
    let cmd = vec![
        ctl.to_string_lossy().into_owned(),
        "failover".into(),
        "watch".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        env: Some(env),
        labels: Some(labels),
        stop_timeout: Some(5),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            pid_mode: Some("host".into()),
            binds: Some(vec![format!("{socket}:{socket}")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = rt.docker().create_container(Some(opts), body).await.with_context(|| format!("creating {name}"))?;
    let inspect = rt.docker().inspect_container(&created.id, None).await?;
    Ok(Container { id: created.id, container_name: name, service: WATCHER.into(), number: 1, inspect })
}

/// The Compose service of the stack's failover watcher.
pub const WATCHER: &str = "failover";

/// Stops every container of the project (routers and connectors first, the broker last, each
/// gracefully) and removes them. Returns the instances removed.
pub async fn down(rt: &DockerRuntime) -> anyhow::Result<Vec<String>> {
    let mut all = rt.containers().await?;
    // Reverse start order: consumers leave their groups while the broker still runs.
    all.sort_by_key(|c| std::cmp::Reverse((super::service_kind(&c.service), c.number)));
    let mut removed = Vec::new();
    let (brokers, rest): (Vec<Container>, Vec<Container>) =
        all.into_iter().partition(|c| super::service_kind(&c.service) == Some(ServiceKind::Broker));
    for batch in [rest, brokers] {
        let stops = batch.iter().filter(|c| c.running()).map(|c| rt.stop_container(c));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        for c in &batch {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            rt.docker()
                .remove_container(&c.id, Some(opts))
                .await
                .with_context(|| format!("removing {}", c.instance()))?;
            removed.push(c.instance());
        }
    }
    Ok(removed)
}
