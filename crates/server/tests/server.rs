//! `stratalake serve` with real clients: psql (Debian's postgresql-client) and psycopg 3 (installed by
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
    psql_commands(r, user, password, sslmode, true, &[sql]).await
}

/// psql's result for `commands`, one `-c` each, on one connection; with `on_error_stop` the
/// first failure ends the run, without it psql goes on to the next command.
async fn psql_commands(
    r: &Running,
    user: &str,
    password: &str,
    sslmode: &str,
    on_error_stop: bool,
    commands: &[&str],
) -> (bool, String, String) {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={user} dbname=lake sslmode={sslmode} sslrootcert={} connect_timeout=10",
        r.addr.port(),
        r.ca.display()
    );
    let mut args: Vec<String> = ["-X", "-A", "-t", "-v", "VERBOSITY=verbose"].map(String::from).into();
    if on_error_stop {
        args.extend(["-v".to_string(), "ON_ERROR_STOP=1".to_string()]);
    }
    for c in commands {
        args.extend(["-c".to_string(), c.to_string()]);
    }
    args.push(conninfo);
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let o = Command::new(psql_binary())
            .args(&args)
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
    // a connection that holds the one slot (no startup yet); until the first psql's connection
    // has given its slot back, a new one is turned away at once: try again then
    let held = tokio::task::spawn_blocking(move || {
        for _ in 0..50 {
            let mut held = TcpStream::connect(addr).unwrap();
            held.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            match held.read(&mut [0u8; 64]) {
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return held;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!("the server never let one connection in");
    })
    .await
    .unwrap();
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

/// A protocol message: its type byte and body.
type Message = (u8, Vec<u8>);

/// One backend message.
fn read_message(s: &mut TcpStream) -> Message {
    try_read_message(s).unwrap()
}

/// One backend message, or the read error (the server closed the connection).
fn try_read_message(s: &mut TcpStream) -> std::io::Result<Message> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body)?;
    Ok((head[0], body))
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
    raw_login_on(TcpStream::connect(addr).unwrap(), user, password)
}

/// [`raw_login`] on a connection already open.
fn raw_login_on(mut s: TcpStream, user: &str, password: &str) -> TcpStream {
    use stratalake::crypto::password::ScramClient;
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
fn until_ready(s: &mut TcpStream) -> Vec<Message> {
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

/// A C string (the protocol's strings end with a zero byte).
fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Parse: statement `name`, `sql`, the declared parameter type OIDs.
fn parse_msg(s: &mut TcpStream, name: &str, sql: &str, oids: &[u32]) {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend((oids.len() as i16).to_be_bytes());
    for o in oids {
        b.extend(o.to_be_bytes());
    }
    send_message(s, b'P', &b);
}

/// Bind: portal, statement, parameter format codes, parameters (`None`: NULL), result formats.
fn bind_msg(s: &mut TcpStream, portal: &str, stmt: &str, formats: &[i16], params: &[Option<&[u8]>], results: &[i16]) {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend((formats.len() as i16).to_be_bytes());
    for f in formats {
        b.extend(f.to_be_bytes());
    }
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend((v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
    }
    b.extend((results.len() as i16).to_be_bytes());
    for f in results {
        b.extend(f.to_be_bytes());
    }
    send_message(s, b'B', &b);
}

fn describe_msg(s: &mut TcpStream, what: u8, name: &str) {
    let mut b = vec![what];
    b.extend(cstr(name));
    send_message(s, b'D', &b);
}

fn execute_msg(s: &mut TcpStream, portal: &str) {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    send_message(s, b'E', &b);
}

/// What came back up to the next ReadyForQuery: message kinds, the SQLSTATE of each error, and
/// the transaction status the ReadyForQuery reports.
fn answer(s: &mut TcpStream) -> (String, Vec<String>, u8, Vec<Message>) {
    send_message(s, b'S', b"");
    let msgs = until_ready(s);
    let kinds = msgs.iter().map(|m| m.0 as char).collect();
    let codes = error_codes(&msgs);
    let status = msgs.last().unwrap().1[0];
    (kinds, codes, status, msgs)
}

/// The fields of a DataRow.
fn row_fields(body: &[u8]) -> Vec<Option<Vec<u8>>> {
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                return None;
            }
            let v = body[at..at + len as usize].to_vec();
            at += len as usize;
            Some(v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_extended_protocol_binds_parameters_sends_binary_rows_and_refuses_what_does_not_fit() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        ..c
    })
    .await;
    let addr = r.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = raw_login(addr, "ana", "ana's passphrase");
        // Parse, then Describe the statement: one int8 parameter (inferred from `id`), two columns
        parse_msg(
            &mut s,
            "by_id",
            "SELECT id, owner FROM permits WHERE id >= $1 ORDER BY id",
            &[],
        );
        describe_msg(&mut s, b'S', "by_id");
        let (kinds, codes, _, msgs) = answer(&mut s);
        assert_eq!(kinds, "1tTZ", "{codes:?}");
        assert_eq!(msgs[1].1, [&1i16.to_be_bytes()[..], &20u32.to_be_bytes()[..]].concat());
        // Bind 2 in binary, ask for binary results: ana's row filter leaves row 3 (north)
        bind_msg(&mut s, "", "by_id", &[1], &[Some(&2i64.to_be_bytes())], &[1]);
        describe_msg(&mut s, b'P', "");
        execute_msg(&mut s, "");
        let (kinds, codes, _, msgs) = answer(&mut s);
        assert_eq!(kinds, "2TDCZ", "{codes:?}");
        let row = row_fields(&msgs[2].1);
        assert_eq!(row, vec![Some(3i64.to_be_bytes().to_vec()), Some(b"Alan".to_vec())]);
        assert!(msgs[3].1.starts_with(b"SELECT 1\0"), "{:?}", msgs[3]);
        // the same statement again with a text parameter and text results
        bind_msg(&mut s, "", "by_id", &[], &[Some(b"1")], &[]);
        execute_msg(&mut s, "");
        let (kinds, _, _, msgs) = answer(&mut s);
        assert_eq!(kinds, "2DDCZ");
        assert_eq!(row_fields(&msgs[1].1), vec![Some(b"1".to_vec()), Some(b"Ada".to_vec())]);

        // what does not fit is refused by name, and the connection goes on after each Sync
        let refused = |s: &mut TcpStream, what: &str, code: &str| {
            let (kinds, codes, _, _) = answer(s);
            assert!(kinds.ends_with("EZ") && codes == [code], "{what}: {kinds} {codes:?}");
        };
        bind_msg(&mut s, "", "by_id", &[], &[Some(b"1"), Some(b"2")], &[]);
        refused(&mut s, "two parameters for one", "08P01");
        bind_msg(&mut s, "", "by_id", &[1, 1], &[Some(&2i64.to_be_bytes())], &[]);
        refused(&mut s, "two format codes for one parameter", "08P01");
        bind_msg(&mut s, "", "by_id", &[7], &[Some(b"1")], &[]);
        refused(&mut s, "format code 7", "22023");
        bind_msg(&mut s, "", "by_id", &[], &[Some(b"1")], &[1, 1, 1]);
        refused(&mut s, "three result formats for two columns", "08P01");
        bind_msg(&mut s, "", "by_id", &[1], &[Some(&[1, 2, 3])], &[]);
        execute_msg(&mut s, "");
        refused(&mut s, "a 3-byte int8", "22P03");
        bind_msg(&mut s, "", "by_id", &[], &[Some(b"one")], &[]);
        execute_msg(&mut s, "");
        refused(&mut s, "text that is no number", "22P02");
        bind_msg(&mut s, "", "nope", &[], &[], &[]);
        refused(&mut s, "an unknown statement", "26000");
        describe_msg(&mut s, b'P', "nope");
        refused(&mut s, "an unknown portal", "34000");
        parse_msg(&mut s, "by_id", "SELECT 1", &[]);
        refused(&mut s, "a statement name taken", "42P05");
        parse_msg(&mut s, "", "SELECT * FROM nowhere WHERE x = $1", &[]);
        refused(&mut s, "an unknown table, at Parse", "42P01");
        parse_msg(&mut s, "", "SELECT 1; SELECT 2", &[]);
        refused(&mut s, "two statements", "42601");
        parse_msg(&mut s, "", "CREATE PRINCIPAL $1", &[]);
        refused(&mut s, "a parameter in Stratalake's own statement", "0A000");
        // a binary NUMERIC of a few bytes claiming a huge weight is refused, not expanded
        parse_msg(&mut s, "", "SELECT $1", &[1700]);
        let mut huge = 1i16.to_be_bytes().to_vec();
        huge.extend(30_000i16.to_be_bytes()); // weight: 10000^30000
        huge.extend([0, 0, 0, 0, 0, 1]);
        bind_msg(&mut s, "", "", &[1], &[Some(&huge)], &[]);
        execute_msg(&mut s, "");
        refused(&mut s, "a numeric with weight 30000", "22P03");
        // a parameter without a type comes back as text
        parse_msg(&mut s, "", "SELECT $1 AS echo", &[]);
        bind_msg(&mut s, "", "", &[], &[Some(b"hello")], &[]);
        execute_msg(&mut s, "");
        let (kinds, _, _, msgs) = answer(&mut s);
        assert_eq!(kinds, "12DCZ");
        assert_eq!(row_fields(&msgs[2].1), vec![Some(b"hello".to_vec())]);
        // after a failed Execute the rest of the pipeline, up to Sync, does not run
        bind_msg(&mut s, "", "by_id", &[], &[Some(b"one")], &[]);
        execute_msg(&mut s, "");
        bind_msg(&mut s, "", "by_id", &[], &[Some(b"1")], &[]);
        execute_msg(&mut s, "");
        let (kinds, codes, _, _) = answer(&mut s);
        assert_eq!((kinds.as_str(), codes), ("2EZ", vec!["22P02".to_string()]));
        // SQL NULL is sent as NULL
        send_message(&mut s, b'Q', &cstr("SELECT NULL AS nothing"));
        let msgs = until_ready(&mut s);
        assert_eq!(row_fields(&msgs[1].1), vec![None], "{msgs:?}");
        // named statements are bounded per connection (empty ones are cheap to make)
        for i in 0..1000 {
            parse_msg(&mut s, &format!("e{i}"), "", &[]);
        }
        parse_msg(&mut s, "one_too_many", "", &[]);
        let (kinds, codes, _, _) = answer(&mut s);
        assert!(kinds.ends_with("1EZ") && codes == ["54000"], "{codes:?}");
        // closing one makes room
        send_message(&mut s, b'C', &[b"S".to_vec(), cstr("e0")].concat());
        parse_msg(&mut s, "one_too_many", "", &[]);
        let (kinds, _, _, _) = answer(&mut s);
        assert_eq!(kinds, "31Z");

        // transaction blocks: reads run, a write is refused before it runs, the block fails
        // until ROLLBACK
        send_message(&mut s, b'Q', &cstr("BEGIN"));
        let msgs = until_ready(&mut s);
        assert_eq!(msgs.last().unwrap().1, b"T");
        parse_msg(&mut s, "", "SELECT count(*) FROM permits", &[]);
        bind_msg(&mut s, "", "", &[], &[], &[]);
        execute_msg(&mut s, "");
        let (kinds, _, status, _) = answer(&mut s);
        assert_eq!((kinds.as_str(), status), ("12DCZ", b'T'));
        // (a nested comment does not make a write look like a read)
        parse_msg(&mut s, "", "/* /* */ SELECT */ DELETE FROM permits WHERE id = $1", &[]);
        bind_msg(&mut s, "", "", &[], &[Some(b"1")], &[]);
        execute_msg(&mut s, "");
        let (_, codes, status, _) = answer(&mut s);
        assert_eq!((codes, status), (vec!["25006".to_string()], b'E'));
        parse_msg(&mut s, "", "SELECT 1", &[]);
        refused(&mut s, "Parse in a failed block", "25P02");
        send_message(&mut s, b'Q', &cstr("SELECT 1"));
        let msgs = until_ready(&mut s);
        assert!(String::from_utf8_lossy(&msgs[0].1).contains("25P02"), "{msgs:?}");
        send_message(&mut s, b'Q', &cstr("ROLLBACK"));
        let msgs = until_ready(&mut s);
        assert_eq!(msgs.last().unwrap().1, b"I");
        // and the simple protocol still works on the same connection
        send_message(&mut s, b'Q', b"SELECT count(*) FROM permits\0");
        let answer = until_ready(&mut s);
        let kinds: Vec<u8> = answer.iter().map(|m| m.0).collect();
        assert_eq!(kinds, b"TDCZ", "{answer:?}");
        assert!(answer[1].1.ends_with(b"2"), "{answer:?}");
    })
    .await
    .unwrap();
    // the statement is audited with its parameter, under ana
    assert_audited(&r, "ana", "WHERE id >= $1", "-- parameters: $1 = 2").await;
    r.stop().await;
}

/// Some audit record of `principal` has `statement` and `params` in its text.
async fn assert_audited(r: &Running, principal: &str, statement: &str, params: &str) {
    let records = r.lake.session("admin").audit().records().await.unwrap();
    assert!(
        records.iter().any(|rec| rec.event.principal == principal
            && rec.event.statement.contains(statement)
            && rec.event.statement.contains(params)),
        "no record of {principal}: {statement} {params} in {:?}",
        records.iter().map(|r| &r.event.statement).collect::<Vec<_>>()
    );
}

/// The Python of the venv with the PostgreSQL client libraries that `scripts/test.sh` makes.
/// A libpq connection string for `user` (TLS verified against the test CA), as the Python
/// clients take it.
fn libpq_conninfo(r: &Running, user: &str, password: &str) -> String {
    format!(
        "host=localhost port={} user={user} password='{}' dbname=lake sslmode=verify-full sslrootcert={} connect_timeout=10",
        r.addr.port(),
        password.replace('\'', "\\'"),
        r.ca.display()
    )
}

fn client_python() -> PathBuf {
    let python = std::env::var_os("STRATALAKE_TEST_CLIENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/client-venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run the tests through scripts/test.sh, which makes a venv with psycopg",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psycopg_binds_parameters_reads_text_and_binary_results_and_keeps_policies() {
    let r = start(|c| c).await;
    r.lake
        .session("admin")
        .sql(
            "CREATE TABLE measures (id BIGINT NOT NULL CLASSIFICATION public, amount DECIMAL(38,4) CLASSIFICATION public, \
             day DATE CLASSIFICATION public, at TIMESTAMP CLASSIFICATION public, note VARCHAR CLASSIFICATION public)",
        )
        .await
        .unwrap();
    let conninfo = |user: &str, password: &str| libpq_conninfo(&r, user, password);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/psycopg_client.py");
    let args = [
        script.display().to_string(),
        conninfo("admin", "admin pass"),
        conninfo("ana", "ana's passphrase"),
        conninfo("bob", "bob pass"),
    ];
    let python = client_python();
    let o = tokio::task::spawn_blocking(move || Command::new(python).args(args).output().unwrap())
        .await
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.trim() == "ok", "stdout: {out}\nstderr: {err}");
    // the writes are audited with their parameters, under admin
    assert_audited(
        &r,
        "admin",
        "DELETE FROM measures WHERE id = $1",
        "-- parameters: $1 = 2",
    )
    .await;
    r.stop().await;
}

/// A blocking connection to `addr` from the loopback address `from` (Linux routes 127.0.0.0/8
/// to the loopback interface, so each is another client address).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let s = sock.connect(addr).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_can_neither_hold_the_login_slots_nor_guess_passwords_for_long() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        limits: Limits {
            max_pending_per_address: 2,
            max_failed_logins: 3,
            failed_login_delay: Duration::from_millis(10),
            ..c.limits
        },
        ..c
    })
    .await;
    let addr = r.addr;
    // two silent connections hold 127.0.0.1's logins; a third from there is refused at once
    // (53300), one from 127.0.0.2 is served
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut refusal = Vec::new();
    let _ = third.read_to_end(&mut refusal);
    let refusal = String::from_utf8_lossy(&refusal);
    assert!(
        refusal.contains("53300") && refusal.contains("have not logged in yet"),
        "{refusal}"
    );
    let other = connect_from("127.0.0.2", addr).await;
    let mut s = tokio::task::spawn_blocking(move || raw_login_on(other, "ana", "ana's passphrase"))
        .await
        .unwrap();
    send_message(&mut s, b'Q', b"SELECT count(*) FROM permits\0");
    assert!(until_ready(&mut s)[1].1.ends_with(b"2"));
    drop(held);

    // three wrong passwords from 127.0.0.1: its logins are refused, even with the right one;
    // 127.0.0.2 still logs in
    for _ in 0..3 {
        let (ok, _, err) = psql(&r, "ana", "wrong", "disable", "SELECT 1").await;
        assert!(!ok && err.contains("password authentication failed"), "{err}");
    }
    let (ok, _, err) = psql(&r, "ana", "ana's passphrase", "disable", "SELECT 1").await;
    assert!(!ok && err.contains("too many failed logins"), "{err}");
    let other = connect_from("127.0.0.2", addr).await;
    tokio::task::spawn_blocking(move || raw_login_on(other, "ana", "ana's passphrase"))
        .await
        .unwrap();
    // the lockout is audited once, the refused attempts after it are not each recorded
    let records = r.lake.session("admin").audit().records().await.unwrap();
    let logins: Vec<_> = records
        .iter()
        .filter(|rec| rec.event.kind == "login" && rec.event.outcome.to_string() != "ok")
        .collect();
    assert!(
        logins
            .iter()
            .any(|rec| rec.event.statement.contains("its logins are refused")),
        "{logins:?}"
    );
    assert_eq!(logins.len(), 4, "{logins:?}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_to_stdout_exports_under_the_principals_policies_and_is_audited() {
    let r = start(|c| c).await;
    let ana = |sql: &'static str| psql(&r, "ana", "ana's passphrase", "require", sql);
    // ana's row filter applies to what she copies, in CSV and in text
    let (ok, out, err) =
        ana("COPY (SELECT id, owner FROM permits ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)").await;
    assert!(ok, "{err}");
    assert_eq!(out, "id,owner\n1,Ada\n3,Alan");
    let (ok, out, err) = ana("COPY permits TO STDOUT").await;
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["1\tAda\tnorth\tt", "3\tAlan\tnorth\t\\N"]);
    // no grant, no copy; no COPY FROM, no files on the server
    let (ok, _, err) = psql(&r, "bob", "bob pass", "require", "COPY permits TO STDOUT").await;
    assert!(!ok && err.contains("42501"), "{err}");
    for (sql, says) in [
        ("COPY permits FROM STDIN", "COPY FROM is not served"),
        ("COPY permits TO '/tmp/stolen.csv'", "refused"),
        ("SELECT 1; COPY permits TO STDOUT", "of its own"),
    ] {
        let (ok, _, err) = ana(sql).await;
        assert!(!ok && err.contains("0A000") && err.contains(says), "{sql}: {err}");
    }
    // the copy is audited as an export, with its format, under ana
    let records = r.lake.session("admin").audit().records().await.unwrap();
    assert!(
        records.iter().any(|rec| rec.event.principal == "ana"
            && rec.event.kind == "export"
            && rec.event.statement.contains("-- COPY TO STDOUT (csv)")
            && rec.event.rows == Some(2)),
        "{:?}",
        records
            .iter()
            .map(|r| (&r.event.kind, &r.event.statement))
            .collect::<Vec<_>>()
    );
    r.stop().await;
}

/// A simple query; the messages up to the next ReadyForQuery and the SQLSTATE of each error.
fn simple_query(s: &mut TcpStream, sql: &str) -> (Vec<Message>, Vec<String>) {
    send_message(s, b'Q', &cstr(sql));
    let msgs = until_ready(s);
    let codes = error_codes(&msgs);
    (msgs, codes)
}

/// The SQLSTATE of each ErrorResponse among `msgs`.
fn error_codes(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.0 == b'E')
        .filter_map(|m| {
            m.1.split(|b| *b == 0)
                .find_map(|f| f.strip_prefix(b"C").map(|c| String::from_utf8_lossy(c).to_string()))
        })
        .collect()
}

/// Every message until the server closes the connection.
fn until_closed(s: &mut TcpStream) -> Vec<Message> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::iter::from_fn(|| try_read_message(s).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_principal_cannot_run_more_statements_at_once_than_its_limit() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        limits: Limits {
            max_queries_per_principal: Some(1),
            statement_timeout: Some(Duration::from_secs(3)),
            ..c.limits
        },
        ..c
    })
    .await;
    let addr = r.addr;
    tokio::task::spawn_blocking(move || {
        let mut busy = raw_login(addr, "ana", "ana's passphrase");
        send_message(&mut busy, b'Q', &cstr(SLOW));
        std::thread::sleep(Duration::from_millis(700));
        // ana's second connection is refused while her first statement runs: 53400, and the
        // message names the setting
        let mut second = raw_login(addr, "ana", "ana's passphrase");
        let (msgs, codes) = simple_query(&mut second, "SELECT count(*) FROM permits");
        assert_eq!(codes, ["53400"], "{msgs:?}");
        let text = String::from_utf8_lossy(&msgs.iter().find(|m| m.0 == b'E').unwrap().1).to_string();
        assert!(text.contains("max_queries_per_principal"), "{text}");
        // another principal is not held up by ana's limit
        let mut admin = raw_login(addr, "admin", "admin pass");
        let (_, codes) = simple_query(&mut admin, "SELECT count(*) FROM permits");
        assert!(codes.is_empty(), "{codes:?}");
        // once the slow statement has ended (the timeout), ana's place is free again
        assert_eq!(error_codes(&until_ready(&mut busy)), ["57014"]);
        let (msgs, codes) = simple_query(&mut second, "SELECT count(*) FROM permits");
        assert!(codes.is_empty(), "{codes:?}");
        assert!(msgs.iter().any(|m| m.0 == b'D'));
    })
    .await
    .unwrap();
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_idle_connections_at_once_and_cancels_statements_after_the_grace_period() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        limits: Limits {
            shutdown_grace: Duration::from_millis(1500),
            ..c.limits
        },
        ..c
    })
    .await;
    let addr = r.addr;
    let (mut idle, mut busy) = tokio::task::spawn_blocking(move || {
        let idle = raw_login(addr, "ana", "ana's passphrase");
        let mut busy = raw_login(addr, "admin", "admin pass");
        send_message(&mut busy, b'Q', &cstr(SLOW));
        std::thread::sleep(Duration::from_millis(500));
        (idle, busy)
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(r.stop());
    let (idle_msgs, busy_msgs, idle_after) = tokio::task::spawn_blocking(move || {
        let idle_msgs = until_closed(&mut idle);
        let idle_after = started.elapsed();
        (idle_msgs, until_closed(&mut busy), idle_after)
    })
    .await
    .unwrap();
    // the idle connection is told why and closed without waiting for the grace period
    assert_eq!(error_codes(&idle_msgs), ["57P01"], "{idle_msgs:?}");
    assert!(idle_after < Duration::from_millis(1400), "{idle_after:?}");
    // the running statement had its grace period, was canceled, then its connection closed
    assert_eq!(error_codes(&busy_msgs), ["57014", "57P01"], "{busy_msgs:?}");
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("the server stops once its connections have closed")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // nothing listens any more
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn the_lake_configuration_gives_the_server_settings_and_names_a_bad_one() {
    let section: stratalake::ServerSection = toml_section(
        r#"listen = "0.0.0.0:6432"
cert = "tls/server.pem"
key = "/etc/stratalake/server.key"
max_queries_per_principal = 4
max_result_size = "2MiB"
idle_timeout = "15m"
shutdown_grace = "5s""#,
    );
    let c = ServerConfig::from_section(&section, Path::new("/lakes/gov")).unwrap();
    assert_eq!(c.listen, "0.0.0.0:6432".parse().unwrap());
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/lakes/gov/tls/server.pem"));
    assert_eq!(tls.key, Path::new("/etc/stratalake/server.key"));
    assert_eq!(c.limits.max_queries_per_principal, Some(4));
    assert_eq!(c.limits.idle_timeout, Some(Duration::from_secs(900)));
    assert_eq!(c.limits.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.limits.max_result_size, 2 << 20);
    assert_eq!(c.limits.max_connections, Limits::default().max_connections);
    for (text, named) in [
        (r#"idle_timeout = "soon""#, "[server] idle_timeout"),
        (r#"listen = "localhost""#, "[server] listen"),
        (r#"cert = "a.pem""#, "[server] cert"),
        (r#"max_result_size = "lots""#, "[server] max_result_size"),
    ] {
        let e = ServerConfig::from_section(&toml_section(text), Path::new("/l")).unwrap_err();
        assert!(e.to_string().contains(named), "{text}: {e}");
    }
}

/// A `[server]` section read through the lake's own configuration parser.
fn toml_section(body: &str) -> stratalake::ServerSection {
    let text = format!("[[tier]]\nname = \"hot\"\nurl = \"data\"\n\n[server]\n{body}\n");
    stratalake::LakeConfig::parse(&text).unwrap().server
}

/// The text of the only field of the only DataRow among `msgs`.
fn only_value(msgs: &[Message]) -> String {
    let rows: Vec<&Message> = msgs.iter().filter(|m| m.0 == b'D').collect();
    assert_eq!(rows.len(), 1, "{msgs:?}");
    String::from_utf8(row_fields(&rows[0].1)[0].clone().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_changes_only_harmless_settings_of_its_own_connection_and_current_user_is_the_login() {
    let r = start(|c| ServerConfig {
        allow_plaintext: true,
        ..c
    })
    .await;
    let addr = r.addr;
    tokio::task::spawn_blocking(move || {
        let mut ana = raw_login(addr, "ana", "ana's passphrase");
        let mut admin = raw_login(addr, "admin", "admin pass");
        // the principal is who logged in, whatever the client claims later
        let (msgs, codes) = simple_query(&mut ana, "SELECT current_user");
        assert!(codes.is_empty(), "{codes:?}");
        assert_eq!(only_value(&msgs), "ana");
        let (msgs, _) = simple_query(&mut admin, "SELECT session_user");
        assert_eq!(only_value(&msgs), "admin");
        // a harmless setting changes on this connection only
        let (msgs, codes) = simple_query(&mut ana, "SET application_name = 'ana''s report'");
        assert!(codes.is_empty() && msgs.iter().any(|m| m.0 == b'C'), "{codes:?}");
        let (msgs, _) = simple_query(&mut ana, "SHOW application_name");
        assert_eq!(only_value(&msgs), "ana's report");
        let (msgs, _) = simple_query(&mut admin, "SHOW application_name");
        assert_eq!(only_value(&msgs), "");
        let (_, codes) = simple_query(&mut ana, "SET TIME ZONE 'UTC'");
        assert!(codes.is_empty(), "{codes:?}");
        // the engine's settings, unknown names and values the server cannot honour are refused
        for (sql, code) in [
            ("SET datafusion.explain.show_statistics = true", "42501"),
            ("SET datafusion.execution.target_partitions = 1", "42501"),
            ("SET work_mem = '1GB'", "42704"),
            ("SET search_path = 'no/such name'", "22023"),
            ("SET TimeZone = 'Europe/Berlin'", "22023"),
            ("SET server_version = '9.6'", "55P02"),
        ] {
            let (_, codes) = simple_query(&mut ana, sql);
            assert_eq!(codes, [code], "{sql}");
        }
        // nothing of that reached the other connection or the engine
        let (msgs, _) = simple_query(&mut admin, "SHOW TimeZone");
        assert_eq!(only_value(&msgs), "UTC");
        // search_path: where this connection's unqualified names resolve
        let (_, codes) = simple_query(&mut ana, "SET search_path TO elsewhere");
        assert!(codes.is_empty(), "{codes:?}");
        let (_, codes) = simple_query(&mut ana, "SELECT count(*) FROM permits");
        assert_eq!(codes, ["42P01"]);
        let (msgs, _) = simple_query(&mut admin, "SELECT count(*) FROM permits");
        assert_eq!(
            only_value(&msgs),
            "4",
            "another connection's search_path changed nothing here"
        );
        let (_, codes) = simple_query(&mut ana, "SET search_path = \"$user\", default");
        assert!(codes.is_empty(), "{codes:?}");
        let (msgs, _) = simple_query(&mut ana, "SHOW search_path");
        assert_eq!(only_value(&msgs), "default");
        let (msgs, _) = simple_query(&mut ana, "SELECT count(*) FROM permits");
        assert_eq!(only_value(&msgs), "2");
        // the extended protocol (psycopg's) takes the same settings: SHOW is described as text
        parse_msg(&mut ana, "", "SHOW application_name", &[]);
        bind_msg(&mut ana, "", "", &[], &[], &[]);
        describe_msg(&mut ana, b'P', "");
        execute_msg(&mut ana, "");
        let (kinds, codes, _, msgs) = answer(&mut ana);
        assert!(codes.is_empty(), "{kinds} {codes:?}");
        assert!(kinds.contains('T'), "{kinds}");
        assert_eq!(only_value(&msgs), "ana's report");
        parse_msg(&mut ana, "", "SET datafusion.explain.show_statistics = true", &[]);
        let (_, codes, _, _) = answer(&mut ana);
        assert_eq!(codes, ["42501"]);
        // in a transaction block (psycopg opens one by default) a SET is no write
        for sql in ["BEGIN", "SET application_name = 'in a block'"] {
            let (_, codes) = simple_query(&mut ana, sql);
            assert!(codes.is_empty(), "{sql}: {codes:?}");
        }
        let (msgs, _) = simple_query(&mut ana, "SHOW application_name");
        assert_eq!(only_value(&msgs), "in a block");
        let (_, codes) = simple_query(&mut ana, "COMMIT");
        assert!(codes.is_empty(), "{codes:?}");
        let (msgs, _) = simple_query(&mut ana, "RESET ALL");
        assert!(msgs.iter().any(|m| m.0 == b'C'));
        let (msgs, _) = simple_query(&mut ana, "SHOW application_name");
        assert_eq!(only_value(&msgs), "");
    })
    .await
    .unwrap();
    r.stop().await;
}

/// The first field of each line of psql's unaligned output.
fn first_fields(out: &str) -> Vec<&str> {
    out.lines().map(|l| l.split('|').next().unwrap_or("")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psqls_describe_commands_show_each_principal_only_what_it_may_see() {
    let r = start(|c| c).await;
    r.lake
        .session("admin")
        .sql(
            "CREATE NAMESPACE hr; \
             CREATE TABLE hr.salaries (name VARCHAR CLASSIFICATION confidential, amount DECIMAL(10,2) CLASSIFICATION secret)",
        )
        .await
        .unwrap();
    let ana = |sql: &'static str| psql(&r, "ana", "ana's passphrase", "require", sql);
    let admin = |sql: &'static str| psql(&r, "admin", "admin pass", "require", sql);

    // \dt: the tables of the default namespace (the search path); \dt *.* every namespace.
    let (ok, out, err) = ana("\\dt").await;
    assert!(ok, "{err}");
    assert_eq!(out, "default|permits|table|stratalake");
    let (ok, out, err) = ana("\\dt *.*").await;
    assert!(ok, "{err}");
    assert_eq!(out, "default|permits|table|stratalake", "ana must not see hr.salaries");
    let (ok, out, err) = admin("\\dt *.*").await;
    assert!(ok, "{err}");
    assert_eq!(out, "default|permits|table|stratalake\nhr|salaries|table|stratalake");
    let (ok, out, err) = admin("\\dt+ permits").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("|permanent||") && (out.contains(" bytes|") || out.contains(" kB|")),
        "{out}"
    );

    // \d table: columns with PostgreSQL's type names, nullability.
    let (ok, out, err) = ana("\\d permits").await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "id|bigint||not null|\nowner|character varying|||\nregion|character varying|||\npaid|boolean|||"
    );
    // A table ana may not know is not found, as if it did not exist.
    let (_, out, err) = ana("\\d hr.salaries").await;
    assert!(
        out.is_empty() && err.contains("Did not find any relation named \"hr.salaries\""),
        "{out} {err}"
    );
    // \d+: a decimal's precision and scale, the classification as the column's description.
    let (ok, out, err) = admin("\\d+ hr.salaries").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("amount|numeric(10,2)|") && out.contains("|classification: secret"),
        "{out}"
    );

    // \du: administrators see every principal and role; anyone else only itself and its roles.
    let (ok, out, err) = ana("\\du").await;
    assert!(ok, "{err}");
    assert_eq!(first_fields(&out), ["ana"], "{out}");
    let (ok, out, err) = admin("\\du").await;
    assert!(ok, "{err}");
    assert_eq!(first_fields(&out), ["admin", "ana", "bob", "lake_admins"], "{out}");
    assert!(out.lines().next().unwrap().contains("Superuser"), "{out}");

    // \dn, \l, \conninfo
    let (ok, out, err) = ana("\\dn").await;
    assert!(ok, "{err}");
    assert_eq!(out, "default|stratalake\nhr|stratalake");
    let (ok, out, err) = ana("\\l").await;
    assert!(ok, "{err}");
    assert_eq!(first_fields(&out), ["lake"], "{out}");
    let (ok, out, err) = ana("\\conninfo").await;
    assert!(ok, "{err}");
    assert!(out.contains("as user \"ana\""), "{out}");

    // The catalog is read-only, and what a client writes to it is refused.
    let (ok, _, err) = admin("INSERT INTO pg_catalog.pg_roles (rolname, rolsuper) VALUES ('mallory', true)").await;
    assert!(!ok && err.contains("ERROR"), "{err}");
    let (ok, out, err) = ana("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = 'mallory'").await;
    assert!(ok && out == "0", "{out} {err}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_over_the_size_limit_stops_with_54000_and_the_connection_goes_on() {
    let r = start_limited(|l| Limits {
        max_result_size: 100,
        ..l
    })
    .await;
    // ana's two rows fit in 100 bytes; the administrator's four do not
    let (ok, out, err) = psql(
        &r,
        "ana",
        "ana's passphrase",
        "require",
        "SELECT * FROM permits ORDER BY id",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2);
    let (ok, _, err) = psql(&r, "admin", "admin pass", "require", "SELECT * FROM permits").await;
    assert!(!ok && err.contains("54000") && err.contains("max_result_size"), "{err}");
    let (ok, _, err) = psql(
        &r,
        "admin",
        "admin pass",
        "require",
        "COPY (SELECT id, repeat(owner, 10) AS owner FROM permits) TO STDOUT",
    )
    .await;
    assert!(!ok && err.contains("54000"), "{err}");
    // the same connection serves the next statement
    let (_, out, err) = psql_commands(
        &r,
        "admin",
        "admin pass",
        "require",
        false,
        &["SELECT * FROM permits", "SELECT count(*) FROM permits"],
    )
    .await;
    assert!(err.contains("max_result_size"), "{err}");
    assert_eq!(out, "4", "{err}");
    ana_is_served(&r, "require").await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_query_while_a_writer_ingests_and_every_answer_is_whole() {
    // seventeen clients on one address log in at once: more than the default 10 pending
    let r = start_limited(|l| Limits {
        max_pending_per_address: 32,
        ..l
    })
    .await;
    let admin = r.lake.session("admin");
    admin
        .sql(
            "CREATE TABLE orders (id BIGINT NOT NULL CLASSIFICATION public, region VARCHAR CLASSIFICATION public, \
             qty BIGINT CLASSIFICATION public, price DECIMAL(12,2) CLASSIFICATION public); \
             CREATE TABLE regions (region VARCHAR CLASSIFICATION public, name VARCHAR CLASSIFICATION public); \
             INSERT INTO regions VALUES ('north', 'North'), ('south', 'South'), ('east', 'East'), ('west', 'West'); \
             GRANT SELECT ON TABLE orders TO ana; \
             CREATE ROW FILTER north_orders ON orders FOR ana WHERE region = 'north'",
        )
        .await
        .unwrap();
    // 1 000 orders to start from, in one commit
    let seed: Vec<String> = (1..=1000)
        .map(|i| {
            format!(
                "({i}, '{}', 1, {}.25)",
                ["north", "south", "east", "west"][i % 4],
                i % 97
            )
        })
        .collect();
    admin
        .sql(&format!("INSERT INTO orders VALUES {}", seed.join(", ")))
        .await
        .unwrap();
    let conninfo = |user: &str, password: &str| libpq_conninfo(&r, user, password);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/load_client.py");
    let args = [
        script.display().to_string(),
        conninfo("admin", "admin pass"),
        conninfo("admin", "admin pass"),
        conninfo("ana", "ana's passphrase"),
        "1000".into(),
        "20".into(),
        "100".into(),
        "4".into(),
    ];
    let python = client_python();
    let o = tokio::task::spawn_blocking(move || Command::new(python).args(args).output().unwrap())
        .await
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(
        o.status.success() && out.starts_with("ok "),
        "stdout: {out}\nstderr: {err}"
    );
    // every batch is one commit: the table's log holds the seed and the writer's 20 batches
    let history = admin.history("orders", None).await.unwrap();
    assert!(history.len() >= 22, "{} commits", history.len());
    r.stop().await;
}
