//! `stratalake serve` with a real client: psql (Debian's postgresql-client, installed by
//! `scripts/test.sh`) over TLS with a test CA made here, SCRAM-SHA-256 logins, one session per
//! principal; refused logins and hostile bytes on the port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stratalake::Lake;
use stratalake_server::{Limits, Server, ServerConfig, TlsFiles};

/// A running server over a lake with table `permits` (two rows per region), principals `ana`
/// (row filter: north only) and `bob` (no grant), each with a password; the test CA's file.
struct Running {
    _dir: tempfile::TempDir,
    lake: Lake,
    addr: SocketAddr,
    ca: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, as PEM files in `dir`.
fn test_pki(dir: &Path) -> (TlsFiles, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "stratalake test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    (files, ca_path)
}

async fn start(config: impl FnOnce(ServerConfig) -> ServerConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::builder(dir.path().join("lake"))
        .admin("admin")
        .create()
        .await
        .unwrap();
    let admin = lake.session("admin");
    admin
        .sql(
            "CREATE TABLE permits (id BIGINT NOT NULL CLASSIFICATION public, owner VARCHAR CLASSIFICATION public, \
             region VARCHAR CLASSIFICATION public, paid BOOLEAN CLASSIFICATION public); \
             INSERT INTO permits VALUES (1, 'Ada', 'north', true), (2, 'Grace', 'south', false), \
             (3, 'Alan', 'north', NULL), (4, 'Edsger', 'south', true); \
             CREATE PRINCIPAL ana; CREATE PRINCIPAL bob; \
             GRANT SELECT ON TABLE permits TO ana; \
             CREATE ROW FILTER north ON permits FOR ana WHERE region = 'north'",
        )
        .await
        .unwrap();
    for (p, pw) in [
        ("admin", "admin pass"),
        ("ana", "ana's passphrase"),
        ("bob", "bob pass"),
    ] {
        admin.access().set_password(p, pw).await.unwrap();
    }
    let (tls, ca) = test_pki(dir.path());
    let server = Server::bind(
        lake.clone(),
        config(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(tls),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        _dir: dir,
        lake,
        addr,
        ca,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A running server (TLS) with these limits.
async fn start_limited(limits: impl FnOnce(Limits) -> Limits) -> Running {
    start(|c| ServerConfig {
        limits: limits(c.limits.clone()),
        ..c
    })
    .await
}

/// ana still gets her rows (the server serves on after whatever a test did to it).
async fn ana_is_served(r: &Running, sslmode: &str) {
    let (ok, out, err) = psql(r, "ana", "ana's passphrase", sslmode, "SELECT count(*) FROM permits").await;
    assert!(ok, "{err}");
    assert_eq!(out, "2");
}

fn psql_binary() -> &'static str {
    let found = Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "psql not found: run the tests through scripts/test.sh, which installs Debian's postgresql-client"
    );
    "psql"
}

/// psql's result (`ok`, stdout, stderr) for `sql` as `user` with `password`.
async fn psql(r: &Running, user: &str, password: &str, sslmode: &str, sql: &str) -> (bool, String, String) {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={user} dbname=lake sslmode={sslmode} sslrootcert={} connect_timeout=10",
        r.addr.port(),
        r.ca.display()
    );
    let (password, sql) = (password.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let o = Command::new(psql_binary())
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
                "-c",
                &sql,
                &conninfo,
            ])
            .env("PGPASSWORD", password)
            .env_remove("PGSERVICE")
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_login_gets_its_own_principals_rows_over_verified_tls() {
    let r = start(|c| c).await;
    let all = "SELECT id, owner, paid FROM permits ORDER BY id";
    let (ok, out, err) = psql(&r, "admin", "admin pass", "verify-full", all).await;
    assert!(ok, "{err}");
    assert_eq!(out, "1|Ada|t\n2|Grace|f\n3|Alan|\n4|Edsger|t");
    // ana's row filter applies inside her session
    let (ok, out, err) = psql(&r, "ana", "ana's passphrase", "verify-full", all).await;
    assert!(ok, "{err}");
    assert_eq!(out, "1|Ada|t\n3|Alan|");
    // bob has no grant: permission denied with its SQLSTATE
    let (ok, _, err) = psql(&r, "bob", "bob pass", "require", all).await;
    assert!(!ok && err.contains("42501"), "{err}");
    // unknown tables, bad SQL: the engine's error with its SQLSTATE
    let (_, _, err) = psql(&r, "ana", "ana's passphrase", "require", "SELECT * FROM nowhere").await;
    assert!(err.contains("42P01"), "{err}");
    let (_, _, err) = psql(&r, "ana", "ana's passphrase", "require", "SELEC 1").await;
    assert!(err.contains("ERROR"), "{err}");
    // several statements in one query string; DDL answers with a tag
    let (ok, out, err) = psql(
        &r,
        "admin",
        "admin pass",
        "require",
        "CREATE TABLE t2 (x INT); INSERT INTO t2 VALUES (7); SELECT x * 6 FROM t2",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.ends_with("42"), "{out}");
    // every statement is audited under its principal, with the client's address and TLS
    let records = r.lake.session("admin").audit().records().await.unwrap();
    let ana = records
        .iter()
        .find(|rec| rec.event.principal == "ana" && rec.event.statement.starts_with("SELECT id, owner"))
        .expect("ana's SELECT is audited");
    assert!(
        ana.event.statement.contains("[pgwire 127.0.0.1:") && ana.event.statement.contains(" tls]"),
        "{ana:?}"
    );
    assert_eq!(ana.event.rows, Some(2));
    // so is the login itself
    assert!(
        records.iter().any(|rec| rec.event.kind == "login"
            && rec.event.principal == "ana"
            && rec.event.outcome.to_string() == "ok"
            && rec.event.statement.contains(" tls]")),
        "no login record for ana"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_passwords_unknown_users_and_plaintext_are_refused_and_audited() {
    let r = start(|c| c).await;
    for (user, pw) in [("ana", "ana's passphrasE"), ("nobody", "whatever"), ("ana", "")] {
        let (ok, out, err) = psql(&r, user, pw, "verify-full", "SELECT 1").await;
        assert!(!ok && out.is_empty(), "{user}: {out}");
        if !pw.is_empty() {
            assert!(
                err.contains(&format!("password authentication failed for user \"{user}\"")),
                "{user}: {err}"
            );
        }
    }
    // no TLS: refused before any password is asked for
    let (ok, _, err) = psql(&r, "ana", "ana's passphrase", "disable", "SELECT 1").await;
    assert!(!ok && err.contains("requires TLS"), "{err}");
    // the failed logins are in the audit log, as denied, without the password
    let records = r.lake.session("admin").audit().records().await.unwrap();
    let logins: Vec<_> = records.iter().filter(|rec| rec.event.kind == "login").collect();
    assert!(logins.len() >= 2, "{logins:?}");
    assert!(logins.iter().any(|rec| rec.event.principal == "nobody"));
    assert!(!format!("{records:?}").contains("passphrasE"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_the_port_leaves_the_server_serving_others() {
    let r = start(|c| c).await;
    let addr = r.addr;
    tokio::task::spawn_blocking(move || {
        let send = |bytes: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let _ = s.write_all(bytes);
            let mut buf = [0u8; 256];
            // the server answers, closes, or waits for more (up to its startup timeout): the test
            // does not wait for it
            let _ = s.read(&mut buf);
        };
        send(&[0xde; 64]); // random bytes
        send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); // the wrong protocol
        send(&0x7fff_ffffu32.to_be_bytes()); // a startup packet claiming 2 GiB
        send(&[0, 0, 0, 4]); // a startup packet too short to be one
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&80877103u32.to_be_bytes()); // SSLRequest ...
        ssl.extend_from_slice(&[0x42; 200]); // ... then garbage instead of a TLS hello
        send(&ssl);
    })
    .await
    .unwrap();
    let (ok, out, err) = psql(
        &r,
        "ana",
        "ana's passphrase",
        "verify-full",
        "SELECT count(*) FROM permits",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "2");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plaintext_needs_loopback_and_a_connection_limit_holds() {
    // plaintext on a public address, or no TLS at all, is refused at start
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::builder(dir.path()).admin("admin").create().await.unwrap();
    let e = Server::bind(
        lake.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("TLS is required"), "{e}");
    let e = Server::bind(
        lake.clone(),
        ServerConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            allow_plaintext: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("only allowed on a loopback"), "{e}");
    // ... also next to a certificate: a client answered "no TLS" by someone in the path would
    // otherwise log in in clear
    let e = Server::bind(
        lake.clone(),
        ServerConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            allow_plaintext: true,
            tls: Some(TlsFiles {
                cert: dir.path().join("any.pem"),
                key: dir.path().join("any.key"),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("only allowed on a loopback"), "{e}");
    // a certificate file that is not one names the file
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let e = Server::bind(
        lake,
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(TlsFiles {
                cert: dir.path().join("bad.pem"),
                key: dir.path().join("bad.pem"),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("bad.pem"), "{e}");

    // with plaintext allowed on loopback, a limit of one connection turns a second away
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        limits: Limits {
            max_connections: 1,
            ..c.limits
        },
        ..c
    })
    .await;
    let (ok, out, err) = psql(&r, "ana", "ana's passphrase", "disable", "SELECT count(*) FROM permits").await;
    assert!(ok, "{err}");
    assert_eq!(out, "2");
    let addr = r.addr;
    let held = TcpStream::connect(addr).unwrap(); // holds the one slot (no startup yet)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, _, _) = psql(&r, "ana", "ana's passphrase", "disable", "SELECT 1").await;
    assert!(!ok, "a second connection over the limit must be refused");
    drop(held);
    r.stop().await;
}

/// A PostgreSQL startup packet (protocol 3.0) for `user`.
fn startup_packet(user: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", "lake")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// Whether the server closed `s` (EOF or reset) within a few seconds, reading past any messages.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_has_not_logged_in_cannot_make_the_server_buffer_much_or_wait_long() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        limits: Limits {
            login_timeout: Duration::from_secs(2),
            ..c.limits
        },
        ..c
    })
    .await;
    let addr = r.addr;
    let (flood_closed, silent_closed) = tokio::task::spawn_blocking(move || {
        // a startup packet, then (in the middle of the login) a message claiming 100 MB, and
        // bytes of it: the server stops reading after a few kilobytes and closes
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&startup_packet("ana")).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(buf[0], b'R', "the server asks for SASL: {:?}", &buf[..n]);
        let mut msg = vec![b'p'];
        msg.extend_from_slice(&100_000_000u32.to_be_bytes());
        s.write_all(&msg).unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..16 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let flood_closed = closed_by_server(&mut s);
        // a client that connects and says nothing is dropped after the login timeout
        let mut silent = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        let silent_closed = closed_by_server(&mut silent);
        (flood_closed, silent_closed)
    })
    .await
    .unwrap();
    assert!(
        flood_closed,
        "the server kept reading an unauthenticated 100 MB message"
    );
    assert!(silent_closed, "a silent connection outlived the login timeout");
    // and everyone else is served
    ana_is_served(&r, "disable").await;
    r.stop().await;
}

/// A statement that runs for many seconds.
const SLOW: &str = "SELECT sum(value) FROM generate_series(1, 1000000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_stop_at_the_timeout_and_on_a_cancel_request_and_the_connection_goes_on() {
    let r = start_limited(|l| Limits {
        statement_timeout: Some(Duration::from_millis(500)),
        ..l
    })
    .await;
    let started = std::time::Instant::now();
    let (ok, out, err) = psql(&r, "ana", "ana's passphrase", "require", &format!("{SLOW}; SELECT 1")).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("57014"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    r.stop().await;

    // psql sends a cancel request on SIGINT (Ctrl-C): the statement stops with 57014
    let r = start(|c| c).await;
    let conninfo = format!(
        "host=127.0.0.1 port={} user=ana dbname=lake sslmode=require connect_timeout=10",
        r.addr.port()
    );
    let child = Command::new(psql_binary())
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            SLOW,
            "-c",
            "SELECT 'still here'",
            &conninfo,
        ])
        .env("PGPASSWORD", "ana's passphrase")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // psql ends once the statement has stopped; a statement that goes on is killed after 20 s
    let o = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(err.contains("57014"), "stdout: {out}\nstderr: {err}");
    // a cancel request with a wrong secret does nothing (and nothing tells the sender)
    let addr = r.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut msg = 16u32.to_be_bytes().to_vec();
        msg.extend_from_slice(&80_877_102u32.to_be_bytes());
        msg.extend_from_slice(&1234i32.to_be_bytes());
        msg.extend_from_slice(&5678i32.to_be_bytes());
        s.write_all(&msg).unwrap();
        assert!(closed_by_server(&mut s));
    })
    .await
    .unwrap();
    ana_is_served(&r, "require").await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let r = start_limited(|l| Limits {
        idle_timeout: Some(Duration::from_millis(700)),
        ..l
    })
    .await;
    // psql runs the first command, then waits before the second (\! runs a shell command
    // locally, sending nothing to the server)
    let (ok, out, err) = psql(&r, "ana", "ana's passphrase", "require", "SELECT 1").await;
    assert!(ok && out == "1", "{err}");
    let conninfo = format!(
        "host=127.0.0.1 port={} user=ana dbname=lake sslmode=require connect_timeout=10",
        r.addr.port()
    );
    let o = tokio::task::spawn_blocking(move || {
        Command::new(psql_binary())
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "VERBOSITY=verbose",
                "-c",
                "SELECT 1",
                "-c",
                "\\! sleep 2",
                "-c",
                "SELECT 2",
                &conninfo,
            ])
            .env("PGPASSWORD", "ana's passphrase")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("57P05") || err.contains("idle"), "{err}");
    r.stop().await;
}

/// One backend message: its type and body.
fn read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    (head[0], body)
}

fn send_message(s: &mut TcpStream, kind: u8, body: &[u8]) {
    let mut msg = vec![kind];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(body);
    s.write_all(&msg).unwrap();
}

/// A plaintext connection logged in as `user` by a SCRAM exchange written out by hand, read up
/// to the first ReadyForQuery.
fn raw_login(addr: SocketAddr, user: &str, password: &str) -> TcpStream {
    use stratalake::crypto::password::ScramClient;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&startup_packet(user)).unwrap();
    let (kind, body) = read_message(&mut s);
    assert_eq!((kind, &body[..4]), (b'R', &10u32.to_be_bytes()[..]), "SASL expected");
    let (client, first) = ScramClient::start(user, password).unwrap();
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    initial.extend_from_slice(&(first.len() as u32).to_be_bytes());
    initial.extend_from_slice(first.as_bytes());
    send_message(&mut s, b'p', &initial);
    let (kind, body) = read_message(&mut s);
    assert_eq!(
        (kind, &body[..4]),
        (b'R', &11u32.to_be_bytes()[..]),
        "SASLContinue expected"
    );
    let (client, fin) = client.respond(std::str::from_utf8(&body[4..]).unwrap()).unwrap();
    send_message(&mut s, b'p', fin.as_bytes());
    let (kind, body) = read_message(&mut s);
    assert_eq!(
        (kind, &body[..4]),
        (b'R', &12u32.to_be_bytes()[..]),
        "SASLFinal expected"
    );
    assert!(client.verify(std::str::from_utf8(&body[4..]).unwrap()));
    loop {
        if read_message(&mut s).0 == b'Z' {
            return s;
        }
    }
}

/// The messages up to and including the next ReadyForQuery.
fn until_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let m = read_message(s);
        let ready = m.0 == b'Z';
        out.push(m);
        if ready {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_extended_protocol_is_refused_by_name_and_the_connection_goes_on() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        ..c
    })
    .await;
    let addr = r.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = raw_login(addr, "ana", "ana's passphrase");
        // Parse, Bind, Execute, Sync: one error (0A000), the rest skipped up to the Sync
        send_message(&mut s, b'P', b"\0SELECT count(*) FROM permits\0\0\0");
        send_message(&mut s, b'B', b"\0\0\0\0\0\0\0\0");
        send_message(&mut s, b'E', b"\0\0\0\0\0");
        send_message(&mut s, b'S', b"");
        let answer = until_ready(&mut s);
        let kinds: Vec<u8> = answer.iter().map(|m| m.0).collect();
        assert_eq!(kinds, b"EZ", "{answer:?}");
        let text = String::from_utf8_lossy(&answer[0].1);
        assert!(
            text.contains("0A000") && text.contains("simple query protocol"),
            "{text}"
        );
        // the simple protocol still works on the same connection
        send_message(&mut s, b'Q', b"SELECT count(*) FROM permits\0");
        let answer = until_ready(&mut s);
        let kinds: Vec<u8> = answer.iter().map(|m| m.0).collect();
        assert_eq!(kinds, b"TDCZ", "{answer:?}");
        assert!(answer[1].1.ends_with(b"2"), "{answer:?}");
    })
    .await
    .unwrap();
    r.stop().await;
}
