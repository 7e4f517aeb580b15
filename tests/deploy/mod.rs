//! The docker/ deployment (SPEC §8: kept correct by hand, validated in CI): its two config files
//! load with the binaries' own loader, the images the compose file builds carry them and their
//! secrets (copied in, nothing bind-mounted), the metrics ports reach Prometheus, the Grafana
//! dashboard charts every SPEC §7 metric, and scripts/validate-deploy.sh accepts everything. No
//! Docker engine is needed: scripts/docker-smoke.sh runs the stack for real.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgcdc::config::{ConfigFile, Format, SinkConfig, SourceConfig};
use pgcdc::metrics::names;
use serde_json::Value;

const SOURCE_CONFIG: &str = "config/docker-source.toml";
const SINK_CONFIG: &str = "config/docker-sink.toml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The lines nested under the first `key:` line at the shallowest indentation of `lines`: a
/// small indentation walk, enough for the block-style YAML of docker-compose.yml.
fn section<'a>(lines: &[&'a str], key: &str) -> Vec<&'a str> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let content: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .collect();
    let base = content.iter().map(|line| indent(line)).min().unwrap_or(0);
    let header = format!("{key}:");
    let start = content
        .iter()
        .position(|line| indent(line) == base && line.trim().starts_with(&header))
        .unwrap_or_else(|| panic!("no `{key}:` in the compose section"));
    content[start + 1..]
        .iter()
        .copied()
        .take_while(|line| indent(line) > base)
        .collect()
}

/// The items of a block sequence (`- item`), unquoted.
fn items(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(|item| item.trim_matches('"').to_owned())
        .collect()
}

fn compose() -> String {
    read("docker/docker-compose.yml")
}

fn service_lines<'a>(compose: &'a str, service: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = compose.lines().collect();
    section(&section(&lines, "services"), service)
}

/// The `--config` path in the service's command (a JSON-compatible flow sequence).
fn config_argument(lines: &[&str], service: &str) -> String {
    let command = lines
        .iter()
        .find_map(|line| line.trim().strip_prefix("command:"))
        .unwrap_or_else(|| panic!("{service} has no command"));
    let command: Vec<String> = serde_json::from_str(command.trim())
        .unwrap_or_else(|e| panic!("{service}'s command is not a [\"...\"] list: {e}"));
    assert_eq!(command[0], service, "{service} runs another binary");
    assert_eq!(command[1], "run", "{service} does not run its pipeline");
    let flag = command
        .iter()
        .position(|arg| arg == "--config")
        .unwrap_or_else(|| panic!("{service}'s command has no --config"));
    command[flag + 1].clone()
}

/// A service's `build:` settings: the context and Dockerfile (resolved against docker/, as
/// compose resolves them) and the target stage, if any.
fn build_of(compose: &str, service: &str) -> (PathBuf, PathBuf, Option<String>) {
    let build = section(&service_lines(compose, service), "build");
    let value = |key: &str| {
        build.iter().find_map(|line| {
            line.trim()
                .strip_prefix(&format!("{key}:"))
                .map(|value| value.trim().to_owned())
        })
    };
    let context = repo()
        .join("docker")
        .join(value("context").unwrap_or_else(|| panic!("{service} is not built from a context")));
    let dockerfile = context.join(value("dockerfile").unwrap_or_else(|| "Dockerfile".into()));
    (context, dockerfile, value("target"))
}

/// A file that a Dockerfile's `COPY` takes from the build context (not `--from` a stage).
#[derive(Clone)]
struct CopiedFile {
    /// Where the file lands in the image.
    destination: String,
    /// The file in the build context.
    source: PathBuf,
    /// Its `--chown` value, if any.
    chown: Option<String>,
}

/// The `COPY`s from the build context that make the Dockerfile's stage `target` (the last stage
/// when `None`), those of the stages it is built on included, in order.
fn copies(context: &Path, dockerfile: &Path, target: Option<&str>) -> Vec<CopiedFile> {
    let text = std::fs::read_to_string(dockerfile)
        .unwrap_or_else(|e| panic!("read {}: {e}", dockerfile.display()));
    let joined = text.replace("\\\n", " ");
    let mut stages: Vec<(Option<String>, Vec<CopiedFile>)> = Vec::new();
    for line in joined.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", base, rest @ ..] => {
                let name = match rest {
                    ["AS", name] => Some((*name).to_owned()),
                    _ => None,
                };
                let inherited = stages
                    .iter()
                    .position(|(stage, _)| stage.as_deref() == Some(*base))
                    .map(|at| stages[at].1.clone())
                    .unwrap_or_default();
                stages.push((name, inherited));
            }
            ["COPY", arguments @ ..] if !arguments.iter().any(|a| a.starts_with("--from=")) => {
                let chown = arguments
                    .iter()
                    .find_map(|a| a.strip_prefix("--chown="))
                    .map(str::to_owned);
                let paths: Vec<&str> = arguments
                    .iter()
                    .copied()
                    .filter(|a| !a.starts_with("--"))
                    .collect();
                let (destination, sources) = paths.split_last().expect("COPY names its files");
                let stage = &mut stages.last_mut().expect("COPY before FROM").1;
                for source in sources {
                    let destination = match destination.strip_suffix('/') {
                        Some(directory) => {
                            let name = Path::new(source).file_name().expect("a file name");
                            format!("{directory}/{}", name.to_str().expect("UTF-8"))
                        }
                        None => (*destination).to_owned(),
                    };
                    stage.push(CopiedFile {
                        destination,
                        source: context.join(source),
                        chown: chown.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    let at = match target {
        Some(target) => stages
            .iter()
            .position(|(stage, _)| stage.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("{} has no stage {target}", dockerfile.display())),
        None => stages.len() - 1,
    };
    stages.swap_remove(at).1
}

/// The checkout's file that `service`'s image has at `container_path`, copied in and owned by a
/// user of the image (`--chown`), so it is readable whatever its mode in the checkout.
fn image_file(compose: &str, service: &str, container_path: &str) -> PathBuf {
    let (context, dockerfile, target) = build_of(compose, service);
    let copies = copies(&context, &dockerfile, target.as_deref());
    let copy = copies
        .iter()
        .rev()
        .find(|copy| copy.destination == container_path)
        .unwrap_or_else(|| panic!("{service}'s image has no file copied to {container_path}"));
    assert!(
        copy.chown.is_some(),
        "{service}: {container_path} is copied without --chown, so a file of a checkout made \
         under umask 077 stays unreadable to the image's user"
    );
    copy.source.canonicalize().unwrap_or_else(|e| {
        panic!(
            "{service} copies {}, which does not exist: {e}",
            copy.source.display()
        )
    })
}

/// Checks that the password file `password_file` names is in `service`'s image, from a
/// non-empty file of the checkout, where a secret store would mount it.
fn assert_secret_in_image(compose: &str, service: &str, password_file: &Path) {
    assert!(
        password_file.starts_with("/run/secrets"),
        "{service}: password_file {} is not where compose and swarm mount secrets",
        password_file.display()
    );
    let container_path = password_file.to_str().expect("a UTF-8 path");
    let source = image_file(compose, service, container_path);
    assert!(
        source.starts_with(repo().join("docker/secrets")),
        "{service}: {container_path} does not come from docker/secrets/"
    );
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    assert!(!text.trim().is_empty(), "{} is empty", source.display());
}

/// Checks that the database service runs `init_sql` and that it sets the role's password from
/// the same secret `password_file` names.
fn assert_role_password_from(compose: &str, database: &str, init_sql: &str, password_file: &Path) {
    assert!(
        read(init_sql).contains(&format!("cat {}", password_file.display())),
        "{init_sql} does not set the role's password from {}",
        password_file.display()
    );
    let name = Path::new(init_sql).file_name().expect("a file name");
    let init = image_file(
        compose,
        database,
        &format!(
            "/docker-entrypoint-initdb.d/{}",
            name.to_str().expect("UTF-8")
        ),
    );
    assert_eq!(
        init,
        repo().join(init_sql),
        "{database} runs another init script"
    );
    assert_secret_in_image(compose, database, password_file);
}

/// Checks that the metrics port is published by the service and scraped by Prometheus.
fn assert_metrics_exposed(compose: &str, service: &str, listen: Option<SocketAddr>) {
    let listen = listen.unwrap_or_else(|| panic!("{service}: metrics.listen is disabled"));
    assert!(
        listen.ip().is_unspecified(),
        "{service}: metrics.listen {listen} is unreachable from the prometheus container"
    );
    let port = listen.port();
    let ports = items(&section(&service_lines(compose, service), "ports"));
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{service} does not publish its metrics port {port}: {ports:?}"
    );
    let prometheus = read("docker/prometheus.yml");
    assert!(
        prometheus.contains(&format!("\"{service}:{port}\"")),
        "docker/prometheus.yml does not scrape {service}:{port}"
    );
}

#[test]
fn docker_source_config_loads_and_is_wired_into_compose() {
    let compose = compose();
    let lines = service_lines(&compose, "cdc-source");
    let in_image = image_file(
        &compose,
        "cdc-source",
        &config_argument(&lines, "cdc-source"),
    );
    let expected = repo()
        .join(SOURCE_CONFIG)
        .canonicalize()
        .expect("config file");
    assert_eq!(
        in_image, expected,
        "cdc-source's image has the wrong config file"
    );

    // No PGCDC__ overrides: the file alone must be valid, as in the container.
    let config = SourceConfig::load_with_env(&in_image, Vec::new())
        .unwrap_or_else(|e| panic!("{SOURCE_CONFIG}: {e}"));
    assert_eq!(config.kafka.format, Format::Avro);
    assert_eq!(config.kafka.brokers, "redpanda:9092");
    assert_eq!(
        config.schema_registry.url.as_deref(),
        Some("http://redpanda:8081")
    );
    assert_eq!(config.capture.tables, ["l1.*"]);
    assert!(config.postgres.url.contains("@source-db:5432/"));

    let password_file = config.postgres.password_file.expect("a password file");
    assert_secret_in_image(&compose, "cdc-source", &password_file);
    assert_role_password_from(
        &compose,
        "source-db",
        "docker/source-init.sql",
        &password_file,
    );
    // The role cannot create these itself (it owns no table), so the init script must.
    let init = read("docker/source-init.sql");
    assert!(
        init.contains(&format!(
            "CREATE PUBLICATION {} ",
            config.capture.publication
        )),
        "docker/source-init.sql does not create publication {}",
        config.capture.publication
    );
    let signal = config.capture.signal_table.expect("a signal table");
    assert!(
        init.contains(&format!("CREATE TABLE {signal} ")),
        "docker/source-init.sql does not create the signal table {signal}"
    );
    assert_metrics_exposed(&compose, "cdc-source", config.metrics.listen);
}

#[test]
fn docker_sink_config_loads_and_is_wired_into_compose() {
    let compose = compose();
    let lines = service_lines(&compose, "cdc-sink");
    let in_image = image_file(&compose, "cdc-sink", &config_argument(&lines, "cdc-sink"));
    let expected = repo()
        .join(SINK_CONFIG)
        .canonicalize()
        .expect("config file");
    assert_eq!(
        in_image, expected,
        "cdc-sink's image has the wrong config file"
    );

    let config = SinkConfig::load_with_env(&in_image, Vec::new())
        .unwrap_or_else(|e| panic!("{SINK_CONFIG}: {e}"));
    assert_eq!(config.kafka.brokers, "redpanda:9092");
    assert_eq!(
        config.schema_registry.url.as_deref(),
        Some("http://redpanda:8081")
    );
    assert!(config.postgres.url.contains("@target-db:5432/"));

    // The sink applies what the source produces.
    let source = SourceConfig::load_with_env(&repo().join(SOURCE_CONFIG), Vec::new())
        .expect("the source config loads");
    let produced = format!("{}.l1.*", source.kafka.topic_prefix);
    assert_eq!(config.apply.topics, [produced]);

    let password_file = config.postgres.password_file.expect("a password file");
    assert_secret_in_image(&compose, "cdc-sink", &password_file);
    assert_role_password_from(
        &compose,
        "target-db",
        "docker/target-init.sql",
        &password_file,
    );
    let verify = config
        .source_postgres
        .expect("[source_postgres] for verify");
    assert_eq!(verify.url, source.postgres.url);
    assert_secret_in_image(
        &compose,
        "cdc-sink",
        &verify.password_file.expect("a source password file"),
    );
    assert_metrics_exposed(&compose, "cdc-sink", config.metrics.listen);
}

/// Issue 17: a bind mount keeps the mode and owner of the checkout's file, so a checkout made
/// under umask 077 (files 0600, owned by the host user) left the databases, Prometheus and both
/// binaries unable to read theirs. Files reach the images by `COPY --chown` instead.
#[test]
fn nothing_is_bind_mounted_from_the_checkout() {
    let compose = compose();
    let lines: Vec<&str> = compose.lines().collect();
    let declared: Vec<String> = section(&lines, "volumes")
        .iter()
        .filter_map(|line| line.trim().strip_suffix(':').map(str::to_owned))
        .collect();
    for top in ["secrets", "configs"] {
        assert!(
            !lines
                .iter()
                .any(|line| line.starts_with(&format!("{top}:"))),
            "compose {top} are bind mounts of the checkout's files"
        );
    }
    let services: Vec<String> = section(&lines, "services")
        .iter()
        .filter(|line| line.len() - line.trim_start().len() == 2)
        .filter_map(|line| line.trim().strip_suffix(':').map(str::to_owned))
        .collect();
    assert!(services.len() >= 8, "services: {services:?}");
    for service in &services {
        let own = service_lines(&compose, service);
        let has = |key: &str| {
            own.iter()
                .any(|line| line.trim_start().starts_with(&format!("{key}:")))
        };
        assert!(
            !has("secrets"),
            "{service} has compose secrets (bind mounts)"
        );
        if !has("volumes") {
            continue;
        }
        for volume in items(&section(&own, "volumes")) {
            let name = volume.split(':').next().unwrap_or_default();
            assert!(
                declared.iter().any(|declared| declared == name),
                "{service} mounts {volume}, not a named volume"
            );
        }
    }
}

#[test]
fn grafana_dashboard_charts_every_metric() {
    let dashboard: Value = serde_json::from_str(&read("docker/grafana/dashboards/pgcdc.json"))
        .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .filter_map(|target| target["expr"].as_str())
        .collect();
    let metrics = [
        names::SOURCE_EVENTS,
        names::SOURCE_LAG_BYTES,
        names::SOURCE_MS_BEHIND,
        names::SOURCE_CONFIRMED_LSN,
        names::SOURCE_INFLIGHT,
        names::SOURCE_ERRORS,
        names::SOURCE_SNAPSHOT_ROWS,
        names::SOURCE_SNAPSHOT_COMPLETED,
        names::SINK_APPLIED,
        names::SINK_BATCH_SECONDS,
        names::SINK_CONSUMER_LAG,
        names::SINK_DEAD_LETTERS,
        names::SINK_SKIPPED,
        names::SINK_ERRORS,
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ];
    // Whole series names only: a misspelt `pgcdc_sink_skipped_totals` must not count.
    let series: BTreeSet<&str> = exprs
        .iter()
        .flat_map(|expr| expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|histogram| *histogram == names::SINK_BATCH_SECONDS)
                .unwrap_or(name)
        })
        .collect();
    let missing: Vec<&str> = metrics
        .into_iter()
        .filter(|metric| !series.contains(metric))
        .collect();
    assert!(missing.is_empty(), "no dashboard panel charts {missing:?}");

    // Panels name the provisioned datasource by uid; another uid shows "datasource not found".
    let provisioned = read("docker/grafana/provisioning/datasources/prometheus.yml");
    let uids: BTreeSet<&str> = panels
        .iter()
        .filter_map(|panel| panel["datasource"]["uid"].as_str())
        .collect();
    for uid in &uids {
        assert!(
            provisioned.contains(&format!("uid: {uid}\n")),
            "the dashboard uses datasource uid {uid}, which is not provisioned"
        );
    }
    // The process panels select both binaries by their Prometheus job names.
    let prometheus = read("docker/prometheus.yml");
    for job in ["pgcdc-source", "pgcdc-sink"] {
        assert!(
            prometheus.contains(&format!("job_name: {job}\n")),
            "docker/prometheus.yml has no job {job}"
        );
        assert!(
            exprs.iter().any(|expr| expr.contains(job)),
            "no dashboard query selects job {job}"
        );
    }
}

#[test]
fn validate_deploy_script_accepts_the_deployment() {
    for (tool, package) in [
        ("docker-compose", "docker-compose"),
        ("promtool", "prometheus"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        assert!(
            found,
            "{tool} is not installed, so the docker/ deployment cannot be validated: run \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {package}"
        );
    }
    let output = Command::new(repo().join("scripts/validate-deploy.sh"))
        .output()
        .expect("run scripts/validate-deploy.sh");
    assert!(
        output.status.success(),
        "scripts/validate-deploy.sh failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
