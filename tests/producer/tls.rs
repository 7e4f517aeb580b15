//! TLS with client certificates, as Aiven and self-run clusters use it: cdc-source and
//! cdc-sink reach a broker and a schema registry that accept only clients presenting a
//! certificate of their CA, configured through `[kafka.options]` `ssl.*` and
//! `[schema_registry]` `ca_file` / `cert_file` / `key_file`. The client key is PKCS#1 (`BEGIN RSA PRIVATE KEY`), which the
//! registry client's TLS library does not take as it is.

use std::time::Duration;

use super::insert_and_read_back;
use crate::sink::target::Target;
use crate::support::capture::Capture;
use crate::support::process::CdcProcess;
use crate::support::tls::{TestPki, TlsProxy};
use crate::support::{shared_pg, Broker, SchemaRegistry};

#[tokio::test]
async fn a_broker_and_registry_behind_tls_get_the_certificates_from_the_config() {
    let pki = TestPki::new();
    let broker = Broker::start_behind_tls(&pki).await;
    let registry = SchemaRegistry::start();
    let registry_port = registry
        .url()
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .expect("the registry's port");
    let registry_tls = TlsProxy::start(&pki, registry_port);
    let https = format!("https://127.0.0.1:{}", registry_tls.port());
    let mut capture = Capture::new(
        shared_pg().await,
        &broker,
        &https,
        "CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY, v text);",
    )
    .await;
    let kafka_options: String = broker
        .client_options()
        .iter()
        .map(|(key, value)| format!("\n\"{key}\" = \"{value}\""))
        .collect();
    let registry_section = |cert: &str| {
        format!(
            "url = \"{https}\"\nca_file = \"{}\"{cert}",
            pki.ca.display()
        )
    };
    let client_cert = format!(
        "\ncert_file = \"{}\"\nkey_file = \"{}\"",
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let base = capture.config(
        &["l1.t"],
        "snapshot = \"never\"",
        &format!("[kafka.options]{kafka_options}"),
    );
    let config = base.replace(
        &format!("url = \"{https}\""),
        &registry_section(&client_cert),
    );

    // Without the client certificate the registry's TLS handshake fails, and `check` says so
    // in the TLS library's words.
    let no_cert = base.replace(&format!("url = \"{https}\""), &registry_section(""));
    let mut check = CdcProcess::spawn("check", &no_cert, &[], &[]);
    assert_eq!(check.wait_exit(Duration::from_secs(60)), 3);
    let output = format!("{}{}", check.stdout_text(), check.stderr_text());
    assert!(
        output.contains("ok    broker")
            && output.contains("FAIL  schema registry")
            && output.contains("alert certificate required"),
        "{output}"
    );

    capture.start(&config).await;
    let value = insert_and_read_back(&capture, &broker, &registry.url(), "through TLS").await;
    assert_eq!(value["after"]["v"], "through TLS");

    let mut target = Target::new(&capture, "").await;
    target.config = target
        .config
        .replace(
            &format!("url = \"{https}\""),
            &registry_section(&client_cert),
        )
        .replace(
            "\n[schema_registry]",
            &format!("\n[kafka.options]{kafka_options}\n\n[schema_registry]"),
        );
    target.start();
    target.settle(&["l1.t -> l1.t: ok (1 row)"]);
    assert_eq!(capture.stop(), 0);
}
