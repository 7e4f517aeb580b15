//! The walsender client against real PostgreSQL: commands, pgoutput streaming, status updates
//! and keepalives, every authentication method and every sslmode.

use std::path::PathBuf;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};
use pgcdc::lsn::Lsn;
use pgcdc::pg::{PgConnectError, PgConnectOptions};
use pgcdc::source::replication::{
    ReplicationClient, ReplicationError, ReplicationMessage, ReplicationStream, SnapshotAction,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::support::postgres::{REPLICATOR, REPLICATOR_PASSWORD};
use crate::support::{shared_pg, unique_dir, ClusterSetup, PgCluster, TestNames};

const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

fn options(url: &str) -> PgConnectOptions {
    PgConnectOptions::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Reads the stream until `done` accepts a message, answering keepalives that ask for a reply
/// with `flushed`; returns every message read.
async fn read_until(
    stream: &mut ReplicationStream,
    flushed: Lsn,
    mut done: impl FnMut(&ReplicationMessage) -> bool,
) -> Vec<ReplicationMessage> {
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no matching message within {STREAM_TIMEOUT:?}: {seen:?}"))
            .expect("read the replication stream")
            .expect("the server ended the stream");
        if let ReplicationMessage::Keepalive {
            reply_requested: true,
            ..
        } = message
        {
            stream
                .send_status(flushed, flushed, flushed, false)
                .await
                .expect("answer a keepalive");
        }
        let finished = done(&message);
        seen.push(message);
        if finished {
            return seen;
        }
    }
}

/// The pgoutput message tags of the XLogData among `messages`.
fn tags(messages: &[ReplicationMessage]) -> String {
    messages
        .iter()
        .filter_map(|m| match m {
            ReplicationMessage::XLogData { data, .. } => data.first().map(|&t| char::from(t)),
            ReplicationMessage::Keepalive { .. } => None,
        })
        .collect()
}

fn is_commit(message: &ReplicationMessage) -> bool {
    matches!(message, ReplicationMessage::XLogData { data, .. } if data.first() == Some(&b'C'))
}

/// The transaction end LSN of the last pgoutput Commit: `C`, flags, commit LSN, end LSN, time.
fn commit_end_lsn(messages: &[ReplicationMessage]) -> Lsn {
    let data = messages
        .iter()
        .rev()
        .find_map(|m| match m {
            ReplicationMessage::XLogData { data, .. } if data.first() == Some(&b'C') => Some(data),
            _ => None,
        })
        .expect("a Commit message");
    Lsn(u64::from_be_bytes(data[10..18].try_into().unwrap()))
}

async fn confirmed_flush_lsn(client: &tokio_postgres::Client, slot: &str) -> Option<String> {
    client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn streams_pgoutput_changes_confirms_lsns_and_answers_keepalives() {
    let pg = shared_pg().await;
    let names = TestNames::new();
    let client = names.create_database(pg).await;
    let _guard = names.guard(pg);
    // A short wal_sender_timeout makes the server ask for replies within a second or two.
    client
        .batch_execute(&format!(
            "CREATE TABLE item (id int PRIMARY KEY, name text);
             CREATE PUBLICATION {} FOR TABLE item;
             ALTER DATABASE {} SET wal_sender_timeout = '3s';",
            names.publication, names.db
        ))
        .await
        .unwrap();

    let mut repl = ReplicationClient::connect(&options(&pg.url(&names.db, REPLICATOR)))
        .await
        .expect("connect as the SCRAM replicator");
    let version = repl.server_version_num().expect("server_version reported");
    let shown = repl.simple_query("SHOW server_version_num").await.unwrap();
    assert_eq!(shown, vec![vec![Some(version.to_string())]]);
    let settings = repl
        .simple_query(
            "SELECT current_setting('DateStyle'), current_setting('IntervalStyle'), \
             current_setting('TimeZone'), current_setting('extra_float_digits'), \
             current_setting('bytea_output'), current_setting('application_name'), \
             current_setting('wal_sender_timeout'), NULL",
        )
        .await
        .unwrap();
    let expected: Vec<Option<String>> = ["ISO, MDY", "postgres", "UTC", "3", "hex", "pgcdc", "3s"]
        .iter()
        .map(|s| Some(s.to_string()))
        .chain([None])
        .collect();
    assert_eq!(settings, vec![expected]);
    let error = repl.simple_query("SELECT nope").await.unwrap_err();
    assert_eq!(error.sqlstate(), Some("42703"), "{error}");
    assert!(
        repl.simple_query("SELECT 1").await.is_ok(),
        "usable after an error"
    );

    let identity = repl.identify_system().await.unwrap();
    assert_eq!(identity.dbname.as_deref(), Some(names.db.as_str()));
    assert!(
        identity.timeline >= 1 && identity.systemid > 0,
        "{identity:?}"
    );
    let slot = repl
        .create_logical_slot(&names.slot, false, SnapshotAction::NoExport)
        .await
        .unwrap();
    assert_eq!(slot.slot_name, names.slot);
    assert_eq!(slot.snapshot_name, None);
    assert!(
        slot.consistent_point >= identity.xlogpos,
        "{slot:?} {identity:?}"
    );

    client
        .batch_execute("INSERT INTO item VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let publication_names = format!("\"{}\"", names.publication);
    let mut stream = repl
        .start_logical_replication(
            &names.slot,
            slot.consistent_point,
            &[
                ("proto_version", "1"),
                ("publication_names", &publication_names),
                ("messages", "true"),
            ],
        )
        .await
        .expect("START_REPLICATION");

    let first = read_until(&mut stream, slot.consistent_point, is_commit).await;
    assert_eq!(tags(&first), "BRIIC");
    let end = commit_end_lsn(&first);
    assert!(end > slot.consistent_point);
    for message in &first {
        let ReplicationMessage::XLogData {
            wal_start,
            server_time_us,
            data,
            ..
        } = message
        else {
            continue;
        };
        // Relation messages are tied to no WAL position; a Commit's is the transaction's end.
        match data.first() {
            Some(b'R') => assert_eq!(*wal_start, Lsn::ZERO),
            Some(b'C') => assert_eq!(*wal_start, end),
            _ => assert!(*wal_start >= slot.consistent_point, "{message:?}"),
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        assert!(
            (now - server_time_us).abs() < 60_000_000,
            "{server_time_us}"
        );
    }

    // The slot's confirmed_flush_lsn follows the flushed LSN of a status update.
    stream.send_status(end, end, end, false).await.unwrap();
    let deadline = Instant::now() + STREAM_TIMEOUT;
    while confirmed_flush_lsn(&client, &names.slot).await != Some(end.to_string()) {
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn stayed behind {end}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Without feedback the server asks for a reply at half of wal_sender_timeout; answered,
    // the connection outlives the timeout and keeps streaming.
    let started = Instant::now();
    read_until(&mut stream, end, |m| {
        matches!(
            m,
            ReplicationMessage::Keepalive {
                reply_requested: true,
                ..
            }
        )
    })
    .await;
    read_until(&mut stream, end, |_| {
        started.elapsed() > Duration::from_secs(4)
    })
    .await;
    client
        .batch_execute("INSERT INTO item VALUES (3, 'three')")
        .await
        .unwrap();
    let second = read_until(&mut stream, end, is_commit).await;
    assert_eq!(tags(&second), "BIC");
    let end = commit_end_lsn(&second);
    stream.send_status(end, end, end, false).await.unwrap();

    stream.finish().await.expect("an orderly end");
    let deadline = Instant::now() + STREAM_TIMEOUT;
    loop {
        let row = client
            .query_one(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&names.slot],
            )
            .await
            .unwrap();
        let (active, confirmed): (bool, String) = (row.get(0), row.get(1));
        if !active {
            assert_eq!(confirmed, end.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "the walsender did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn exported_snapshot_shows_the_data_before_the_slot() {
    let pg = shared_pg().await;
    let names = TestNames::new();
    let client = names.create_database(pg).await;
    let _guard = names.guard(pg);
    client
        .batch_execute(&format!(
            "CREATE TABLE item (id int PRIMARY KEY);
             INSERT INTO item VALUES (1), (2);
             GRANT SELECT ON item TO {REPLICATOR};"
        ))
        .await
        .unwrap();
    let mut repl = ReplicationClient::connect(&options(&pg.url(&names.db, REPLICATOR)))
        .await
        .unwrap();
    let slot = repl
        .create_logical_slot(&names.slot, true, SnapshotAction::Export)
        .await
        .unwrap();
    let snapshot = slot.snapshot_name.expect("an exported snapshot");
    client
        .batch_execute("INSERT INTO item VALUES (3)")
        .await
        .unwrap();

    let reader = options(&pg.url(&names.db, REPLICATOR))
        .connect_sql()
        .await
        .unwrap();
    reader
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'"
        ))
        .await
        .unwrap();
    let count: i64 = reader
        .query_one("SELECT count(*) FROM item", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
    let timezone: String = reader.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(timezone, "UTC");
    repl.close().await.unwrap();
}

#[tokio::test]
async fn server_errors_carry_their_fields() {
    let pg = shared_pg().await;
    let repl = ReplicationClient::connect(&options(&pg.url("postgres", REPLICATOR)))
        .await
        .unwrap();
    let error = match repl
        .start_logical_replication("no_such_slot", Lsn::ZERO, &[])
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("START_REPLICATION of a missing slot succeeded"),
    };
    assert_eq!(error.sqlstate(), Some("42704"), "{error}");
    assert!(!error.is_transient());
    let ReplicationError::Server(server) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(server.severity, "ERROR");
    assert_eq!(
        server.message,
        "replication slot \"no_such_slot\" does not exist"
    );
    assert!(
        server.file.is_some() && server.routine.is_some(),
        "{server:?}"
    );

    let missing_db = format!("{}&connect_timeout=5", pg.url("no_such_db", REPLICATOR));
    let error = match ReplicationClient::connect(&options(&missing_db)).await {
        Err(error) => error,
        Ok(_) => panic!("connected to a missing database"),
    };
    assert_eq!(error.sqlstate(), Some("3D000"), "{error}");
}

#[tokio::test]
async fn sslmode_prefer_falls_back_and_require_refuses_a_plain_server() {
    let pg = shared_pg().await;
    let plain = pg.url("postgres", REPLICATOR);
    let prefer = plain.replace("sslmode=disable", "sslmode=prefer");
    let mut repl = ReplicationClient::connect(&options(&prefer))
        .await
        .expect("prefer against a server without TLS");
    repl.identify_system().await.unwrap();
    repl.close().await.unwrap();

    let require = plain.replace("sslmode=disable", "sslmode=require");
    let error = match ReplicationClient::connect(&options(&require)).await {
        Err(error) => error,
        Ok(_) => panic!("require accepted a server without TLS"),
    };
    assert!(
        matches!(&error, ReplicationError::Tls { reason, .. }
            if reason.contains("does not accept TLS connections")),
        "{error}"
    );
}

/// A TLS cluster with a role per authentication method, shared by the tests below.
struct AuthCluster {
    pg: PgCluster,
    /// The CA that signed the server's certificate (for DNS name `localhost` only).
    ca_file: PathBuf,
    /// A CA that signed nothing the server has.
    other_ca_file: PathBuf,
}

const MD5_USER: &str = "md5_user";
const CLEARTEXT_USER: &str = "cleartext_user";
const TRUST_USER: &str = "trust_user";
const PASSWORD: &str = "p@ss w/ord%";

impl AuthCluster {
    fn url(&self, user: &str, password: Option<&str>, host: &str, query: &str) -> String {
        let password = password
            .map(|p| {
                format!(
                    ":{}",
                    p.replace('%', "%25")
                        .replace('@', "%40")
                        .replace('/', "%2F")
                )
            })
            .unwrap_or_default();
        format!(
            "postgresql://{user}{password}@{host}:{}/postgres?connect_timeout=10&{query}",
            self.pg.port()
        )
    }

    fn ca(&self) -> String {
        self.ca_file.display().to_string()
    }
}

async fn auth_cluster() -> &'static AuthCluster {
    static CLUSTER: OnceCell<AuthCluster> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let (ca, ca_key) = certificate_authority("pgcdc test CA");
            let (other_ca, _) = certificate_authority("pgcdc other CA");
            let (cert, key) = server_certificate(&ca, &ca_key, "localhost");
            let dir = unique_dir("tls");
            let ca_file = dir.join("ca.pem");
            let other_ca_file = dir.join("other-ca.pem");
            std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
            std::fs::write(&other_ca_file, other_ca.to_pem().unwrap()).unwrap();
            let setup = ClusterSetup {
                extra_conf: "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                    .into(),
                // The replicator may only log in over TLS; one role per other method.
                hba: Some(format!(
                    "local   all postgres                   trust\n\
                     host    all postgres       127.0.0.1/32 trust\n\
                     host    all {MD5_USER}       127.0.0.1/32 md5\n\
                     host    all {CLEARTEXT_USER} 127.0.0.1/32 password\n\
                     host    all {TRUST_USER}     127.0.0.1/32 trust\n\
                     hostssl all {REPLICATOR}     127.0.0.1/32 scram-sha-256\n"
                )),
                data_files: vec![
                    ("server.crt".into(), cert.to_pem().unwrap()),
                    ("server.key".into(), key.private_key_to_pem_pkcs8().unwrap()),
                ],
            };
            let pg = PgCluster::with_setup(setup).await;
            let password = PASSWORD.replace('\'', "''");
            pg.superuser_client("postgres")
                .await
                .batch_execute(&format!(
                    "SET password_encryption = 'md5';
                     CREATE ROLE {MD5_USER} LOGIN REPLICATION PASSWORD '{password}';
                     RESET password_encryption;
                     CREATE ROLE {CLEARTEXT_USER} LOGIN REPLICATION PASSWORD '{password}';
                     CREATE ROLE {TRUST_USER} LOGIN REPLICATION;"
                ))
                .await
                .expect("create the roles");
            AuthCluster {
                pg,
                ca_file,
                other_ca_file,
            }
        })
        .await
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn certificate_builder(common_name: &str, key: &PKey<Private>, serial: u32) -> X509Builder {
    let name = subject(common_name);
    let mut builder = X509Builder::new().unwrap();
    builder.set_version(2).unwrap();
    builder
        .set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_pubkey(key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    builder
}

fn certificate_authority(common_name: &str) -> (X509, PKey<Private>) {
    let key = new_key();
    let mut builder = certificate_builder(common_name, &key, 1);
    builder.set_issuer_name(&subject(common_name)).unwrap();
    builder
        .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    (builder.build(), key)
}

fn subject(common_name: &str) -> X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .unwrap();
    name.build()
}

/// A server certificate naming only `dns_name`, so an IP address fails `verify-full`.
fn server_certificate(ca: &X509, ca_key: &PKey<Private>, dns_name: &str) -> (X509, PKey<Private>) {
    let key = new_key();
    let mut builder = certificate_builder(dns_name, &key, 2);
    builder.set_issuer_name(ca.subject_name()).unwrap();
    let san = SubjectAlternativeName::new()
        .dns(dns_name)
        .build(&builder.x509v3_context(Some(ca), None))
        .unwrap();
    builder.append_extension(san).unwrap();
    builder
        .append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
        .unwrap();
    builder.sign(ca_key, MessageDigest::sha256()).unwrap();
    (builder.build(), key)
}

async fn connect(url: &str) -> Result<ReplicationClient, ReplicationError> {
    ReplicationClient::connect(&options(url)).await
}

/// Whether the walsender session runs over TLS, from the server's point of view.
async fn uses_tls(repl: &mut ReplicationClient) -> bool {
    let rows = repl
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    rows == vec![vec![Some("t".to_string())]]
}

#[tokio::test]
async fn every_authentication_method_logs_in() {
    let auth = auth_cluster().await;
    for (user, password, query) in [
        (MD5_USER, Some(PASSWORD), "sslmode=disable"),
        (CLEARTEXT_USER, Some(PASSWORD), "sslmode=disable"),
        (TRUST_USER, None, "sslmode=disable"),
        (REPLICATOR, Some(REPLICATOR_PASSWORD), "sslmode=require"),
    ] {
        let url = auth.url(user, password, "127.0.0.1", query);
        let mut repl = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let identity = repl.identify_system().await.unwrap();
        assert_eq!(identity.dbname.as_deref(), Some("postgres"));
        repl.close().await.unwrap();
    }

    let wrong = auth.url(MD5_USER, Some("wrong"), "127.0.0.1", "sslmode=disable");
    let error = connect(&wrong)
        .await
        .err()
        .expect("a wrong md5 password fails");
    assert_eq!(
        error.to_string(),
        "authentication as user \"md5_user\" failed: password authentication failed for user \"md5_user\""
    );
    assert_eq!(error.sqlstate(), Some("28P01"));
    assert!(!error.is_transient());

    let wrong = auth.url(REPLICATOR, Some("wrong"), "localhost", "sslmode=require");
    let error = connect(&wrong)
        .await
        .err()
        .expect("a wrong SCRAM password fails");
    assert_eq!(
        error.to_string(),
        "authentication as user \"replicator\" failed: password authentication failed for user \"replicator\""
    );

    let missing = auth.url(CLEARTEXT_USER, None, "127.0.0.1", "sslmode=disable");
    let error = connect(&missing).await.err().expect("no password fails");
    assert!(
        error.to_string().starts_with(
            "authentication as user \"cleartext_user\" failed: the server asks for a password \
             (password) but none was given"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn sslmodes_verify_what_they_promise() {
    let auth = auth_cluster().await;
    let ca = auth.ca();
    let url =
        |host: &str, query: &str| auth.url(REPLICATOR, Some(REPLICATOR_PASSWORD), host, query);

    for (host, query) in [
        ("127.0.0.1", "sslmode=prefer".to_string()),
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
    ] {
        let mut repl = connect(&url(host, &query))
            .await
            .unwrap_or_else(|e| panic!("{host} {query}: {e}"));
        assert!(uses_tls(&mut repl).await, "{query}");
        repl.close().await.unwrap();
    }

    let refused = |result: Result<ReplicationClient, ReplicationError>| match result {
        Err(ReplicationError::Tls { reason, .. }) => reason,
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("the connection was accepted"),
    };
    let wrong_host = refused(
        connect(&url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ))
        .await,
    );
    assert!(wrong_host.contains("IP address mismatch"), "{wrong_host}");
    let other_ca = auth.other_ca_file.display().to_string();
    let wrong_ca = refused(
        connect(&url(
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        ))
        .await,
    );
    assert!(
        wrong_ca.contains("unable to get local issuer certificate"),
        "{wrong_ca}"
    );
    // libpq: `require` with a root certificate verifies the chain.
    refused(
        connect(&url(
            "localhost",
            &format!("sslmode=require&sslrootcert={other_ca}"),
        ))
        .await,
    );

    // The replicator's only pg_hba.conf line is `hostssl`.
    let error = connect(&url("127.0.0.1", "sslmode=disable"))
        .await
        .err()
        .expect("a plain connection is refused");
    assert!(
        error.to_string().contains(
            "authentication as user \"replicator\" failed: no pg_hba.conf entry for host \
             \"127.0.0.1\", user \"replicator\", database \"postgres\""
        ),
        "{error}"
    );
    assert_eq!(error.sqlstate(), Some("28000"));

    // SQL connections honour the same modes.
    let sql = options(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .connect_sql()
    .await
    .expect("verify-full SQL connection");
    let ssl: bool = sql
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let error = options(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .connect_sql()
    .await
    .expect_err("verify-full with the wrong host name fails");
    assert!(
        matches!(&error, PgConnectError::Connect { source, .. } if source.to_string().contains("IP address mismatch")),
        "{error}"
    );
    let error = options(&url("127.0.0.1", "sslmode=disable"))
        .connect_sql()
        .await
        .expect_err("a plain SQL connection is refused");
    assert!(
        error.to_string().contains("no pg_hba.conf entry"),
        "{error}"
    );
}
