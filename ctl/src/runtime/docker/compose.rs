//! `compose/docker-compose.local.yml`: the same services as `compose/docker-compose.yml`, on
//! the images built here, for Debian's `docker-compose` 1.29. `chat4allctl up --runtime docker
//! --compose-env FILE` builds the images and writes FILE: every value the local file
//! interpolates (images, binaries, ports, the stack's URLs and control token), which is also
//! every service's environment (`env_file`). docker-compose then creates the containers, and the
//! ctl finds them by their Compose labels like its own.
//!
//! Each instance's command and environment are [`StackSpec::launch`]'s: the file spells the
//! commands out with these ports, the values come from here, so the two cannot drift apart in
//! anything but the file's layout (the docker test runs the file).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::spec::{ServiceKind, StackSpec};

/// The images a stack runs on and the JRE's binary inside the broker's.
#[derive(Debug, Clone)]
pub struct Images {
    pub platform: String,
    /// With an embedded broker: its image and `java` (a host path, kept in the image).
    pub broker: Option<(String, PathBuf)>,
}

/// `C4A_PORT_ROUTER_SERVICE` for `router-service`.
pub fn port_var(kind: ServiceKind) -> String {
    let name = match kind {
        ServiceKind::Broker => "kafka",
        k => k.name(),
    };
    format!("C4A_PORT_{}", name.replace('-', "_").to_ascii_uppercase())
}

/// The variables of the local Compose file, in a stable order.
pub fn variables(
    spec: &StackSpec,
    images: &Images,
    token: &str,
    env_file: &Path,
    project: &str,
    socket: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let (broker_image, java) = images.broker.clone().context("the local Compose file runs its own Kafka")?;
    let broker = spec.launch(ServiceKind::Broker, 1)?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut vars = vec![
        ("C4A_ENV_FILE".to_string(), path(env_file)),
        ("C4A_PLATFORM_IMAGE".into(), images.platform.clone()),
        ("C4A_KAFKA_IMAGE".into(), broker_image),
        ("C4A_SERVER_BIN".into(), path(&spec.server_bin)),
        ("C4A_PROVIDER_BIN".into(), path(&spec.provider_bin)),
        ("C4A_PROVIDER_REJECT_RATE".into(), spec.provider_reject_rate.to_string()),
        ("C4A_JAVA".into(), path(&java)),
        ("C4A_BROKER_ARGS".into(), broker.args.join(" ")),
        ("C4A_BROKER_DIR".into(), path(&spec.broker_data)),
        // The failover watcher: the ctl, the engine's socket, the project it watches.
        ("C4A_CTL_BIN".into(), path(&std::env::current_exe().context("locating chat4allctl")?)),
        ("C4A_DOCKER_SOCKET".into(), socket.trim_start_matches("unix://").to_string()),
        ("C4A_PORT_FAILOVER".into(), spec.ports.failover_watch.to_string()),
        ("CHAT4ALL_COMPOSE_PROJECT".into(), project.to_string()),
    ];
    for kind in ServiceKind::ALL {
        vars.push((port_var(kind), spec.port_of(kind, 1).to_string()));
    }
    // What every platform service reads (the message-service's is everyone's but a connector's
    // provider URL, which the file sets per connector).
    vars.extend(spec.launch(ServiceKind::MessageService, 1)?.env);
    vars.push((chat4all_contract::admin::ADMIN_TOKEN_ENV.to_string(), token.to_string()));
    if let Some((k, v)) = vars.iter().find(|(_, v)| v.contains(['\n', '"', '\'', '$'])) {
        anyhow::bail!("{k}={v:?}: a value docker-compose's env file cannot hold as it is");
    }
    Ok(vars)
}

/// Writes `KEY=value` lines (docker-compose's `--env-file` and `env_file` format).
pub fn write(path: &Path, vars: &[(String, String)]) -> anyhow::Result<()> {
    let mut text = String::from("# Written by `chat4allctl up --runtime docker --compose-env`; read by\n");
    text.push_str("# docker-compose --env-file THIS -f compose/docker-compose.local.yml -p PROJECT up -d\n");
    for (k, v) in vars {
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file the variables are for (what the docker test brings up).
    const LOCAL_FILE: &str = include_str!("../../../../compose/docker-compose.local.yml");

    #[test]
    fn every_value_the_local_file_interpolates_is_written() {
        let spec = StackSpec {
            server_bin: "/b/chat4all-server".into(),
            provider_bin: "/b/chat4all-provider".into(),
            provider_reject_rate: 0.0,
            kafka_libs: Some("/k/libs".into()),
            broker_data: "/d/docker/broker".into(),
            brokers: 1,
            ports: crate::spec::Ports::with_offset(600),
            database_url: "postgres://postgres@127.0.0.1:5432/chat4all".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            kafka_bootstrap: "127.0.0.1:9692".into(),
            embedded_broker: true,
            group_protocol: Default::default(),
        };
        let images = Images { platform: "p:1".into(), broker: Some(("k:1".into(), "/j/bin/java".into())) };
        let vars = variables(&spec, &images, "tok", Path::new("/d/compose.env"), "p", "unix:///run/d.sock").unwrap();
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        let used: Vec<&str> =
            LOCAL_FILE.split("${").skip(1).filter_map(|r| r.split_once('}').map(|(v, _)| v)).collect();
        assert!(used.len() > 20, "{used:?}");
        for v in used {
            assert!(
                names.contains(&v),
                "compose/docker-compose.local.yml uses ${{{v}}}, which --compose-env does not write"
            );
        }
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("C4A_PORT_ROUTER_SERVICE"), Some("8691"));
        assert_eq!(get("C4A_PORT_KAFKA"), Some("9692"));
        assert!(get("C4A_BROKER_ARGS").is_some_and(|a| a.ends_with("/d/docker/broker/server.properties")), "{vars:?}");
        let no_broker = Images { broker: None, ..images };
        assert!(variables(&spec, &no_broker, "tok", Path::new("/x"), "p", "/s").is_err());
        assert_eq!(get("C4A_DOCKER_SOCKET"), Some("/run/d.sock"));
    }

    #[test]
    fn port_variables_are_the_compose_service_names() {
        assert_eq!(port_var(ServiceKind::RouterService), "C4A_PORT_ROUTER_SERVICE");
        assert_eq!(port_var(ServiceKind::Broker), "C4A_PORT_KAFKA");
        assert_eq!(port_var(ServiceKind::WhatsappProvider), "C4A_PORT_WHATSAPP_PROVIDER");
    }
}
