//! Credentials of principals: passwords (argon2id + SCRAM-SHA-256 verifier) and API tokens, as
//! the server checks them before it opens a session. Only hashes are stored; who may change
//! whose credentials; expiry, revocation and hostile input.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use stratalake::crypto::password::{ScramClient, ScramServer};
use stratalake::{ErrorKind, Lake};

const DAY_MS: i64 = 86_400_000;

/// A lake in a folder whose clock the test moves, with `admin` (lake administrator), `ana`
/// and `bob` (users) and the role `analysts`.
async fn lake() -> (tempfile::TempDir, Lake, Arc<AtomicI64>) {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(1_767_225_600_000));
    let n = now.clone();
    let lake = Lake::builder(dir.path())
        .admin("admin")
        .clock(stratalake::Clock::from_fn(move || n.load(Ordering::Relaxed)))
        .create()
        .await
        .unwrap();
    lake.session("admin")
        .sql("CREATE PRINCIPAL ana; CREATE PRINCIPAL bob; CREATE ROLE analysts")
        .await
        .unwrap();
    (dir, lake, now)
}

/// A whole SCRAM exchange against the lake's verifier for `user`: whether the server accepted
/// and, if so, whether the client accepted the server's proof.
async fn scram_login(lake: &Lake, user: &str, password: &str) -> bool {
    let verifier = lake.scram_verifier(user).await.unwrap();
    let (client, first) = ScramClient::start(user, password).unwrap();
    let (server, server_first) = ScramServer::start(&verifier, first.as_bytes()).unwrap();
    let (client, fin) = client.respond(&server_first).unwrap();
    match server.finish(fin.as_bytes()) {
        Ok(server_final) => {
            assert!(client.verify(&server_final), "the server's proof must verify");
            true
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_log_in_by_both_methods_and_only_hashes_are_kept() {
    let (dir, lake, _) = lake().await;
    let password = "Tr0ub4dor&3 horse";
    lake.session("admin")
        .access()
        .set_password("ana", password)
        .await
        .unwrap();
    assert_eq!(lake.authenticate_password("ana", password).await.unwrap(), "ana");
    assert!(scram_login(&lake, "ana", password).await);
    // wrong password, no password, unknown user: one error, nothing that tells them apart
    for (user, pw) in [("ana", "tr0ub4dor&3 horse"), ("bob", password), ("nobody", password)] {
        let e = lake.authenticate_password(user, pw).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        assert_eq!(e.to_string(), format!("authentication failed for {user:?}"));
        assert!(!scram_login(&lake, user, pw).await, "{user}");
    }
    // an unknown user's exchange looks like a real one: a salt, stable for the user
    let a = lake.scram_verifier("nobody").await.unwrap();
    assert_eq!(a, lake.scram_verifier("nobody").await.unwrap());
    assert_ne!(a.salt, lake.scram_verifier("someone").await.unwrap().salt);

    // a new password replaces the old one for both methods
    lake.session("ana")
        .access()
        .change_own_password(password, "another one")
        .await
        .unwrap();
    assert!(lake.authenticate_password("ana", password).await.is_err());
    assert!(!scram_login(&lake, "ana", password).await);
    assert!(scram_login(&lake, "ana", "another one").await);

    // the password is nowhere on disk, in the audit log or in Debug output; the catalog holds
    // only the hashes
    let mut on_disk = String::new();
    for entry in walk(dir.path()) {
        on_disk.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    assert!(!on_disk.contains("another one") && !on_disk.contains(password));
    assert!(on_disk.contains("$argon2id$") && on_disk.contains("SCRAM-SHA-256$4096:"));
    let admin = lake.session("admin");
    let state = admin.access().state().await.unwrap();
    let scram = state.principals["ana"]
        .credentials
        .password
        .as_ref()
        .unwrap()
        .scram
        .clone();
    assert!(!format!("{state:?}").contains(&scram), "hashes in Debug output");
    let audit = format!("{:?}", admin.audit().records().await.unwrap());
    assert!(audit.contains("SET PASSWORD FOR ana"), "{audit}");
    assert!(!audit.contains(&scram) && !audit.contains("argon2id") && !audit.contains("another one"));

    // credentials are kept across a reopen
    let reopened = Lake::builder(dir.path()).open().await.unwrap();
    assert_eq!(
        reopened.authenticate_password("ana", "another one").await.unwrap(),
        "ana"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_set_credentials_and_a_principal_changes_its_own_password_with_the_current_one() {
    let (_dir, lake, _) = lake().await;
    let ana = lake.session("ana");
    // a session is not enough to set a password or mint a token, not even one's own
    let e = ana.access().set_password("ana", "taken over").await.unwrap_err();
    assert!(e.is_permission_denied(), "{e}");
    let e = ana.access().create_token("ana", "x", None).await.unwrap_err();
    assert!(e.is_permission_denied(), "{e}");
    let admin = lake.session("admin");
    admin.access().set_password("ana", "ana's first").await.unwrap();
    let t = admin.access().create_token("ana", "laptop", None).await.unwrap();
    // changing one's own password needs the current one
    let e = ana
        .access()
        .change_own_password("not it", "ana's own")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(lake.authenticate_password("ana", "ana's first").await.is_ok());
    ana.access()
        .change_own_password("ana's first", "ana's own")
        .await
        .unwrap();
    assert!(lake.authenticate_password("ana", "ana's first").await.is_err());
    assert!(scram_login(&lake, "ana", "ana's own").await);
    assert_eq!(ana.access().tokens(Some("ana")).await.unwrap().len(), 1);
    // someone else's credentials: refused and audited as denied
    let e = ana.access().set_password("bob", "taken over").await.unwrap_err();
    assert!(e.is_permission_denied(), "{e}");
    assert!(
        ana.access()
            .create_token("bob", "x", None)
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    assert!(
        ana.access()
            .tokens(Some("bob"))
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    assert!(ana.access().tokens(None).await.unwrap_err().is_permission_denied());
    let bob_token = lake
        .session("admin")
        .access()
        .create_token("bob", "ci", None)
        .await
        .unwrap();
    assert!(
        ana.access()
            .revoke_token("bob", &bob_token.id)
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    // nor by naming her own principal with someone else's token id
    let e = ana.access().revoke_token("ana", &bob_token.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(lake.authenticate_token(&bob_token.secret).await.unwrap(), "bob");
    let denied = lake
        .session("admin")
        .audit()
        .records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.principal == "ana" && r.event.outcome == stratalake::table::audit::Outcome::Denied)
        .count();
    assert!(denied >= 3, "{denied}");
    // an administrator manages anyone's
    let admin = lake.session("admin");
    admin.access().set_password("bob", "reset by admin").await.unwrap();
    assert_eq!(admin.access().tokens(None).await.unwrap().len(), 2);
    admin.access().revoke_token("ana", &t.id).await.unwrap();
    assert!(lake.authenticate_token(&t.secret).await.is_err());
    admin.access().clear_password("ana").await.unwrap();
    assert!(lake.authenticate_password("ana", "ana's own").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_are_revoked_and_never_match_when_altered() {
    let (_dir, lake, now) = lake().await;
    let admin = lake.session("admin");
    let week = admin
        .access()
        .create_token("ana", "a week", Some(Duration::from_secs(7 * 86_400)))
        .await
        .unwrap();
    let forever = admin.access().create_token("ana", "", None).await.unwrap();
    assert_ne!(week.id, forever.id);
    assert!(
        !format!("{week:?}").contains(week.secret.as_str()),
        "secret in Debug output"
    );
    assert_eq!(lake.authenticate_token(&week.secret).await.unwrap(), "ana");
    assert!(lake.token_valid(&week.id).await.unwrap());
    // altered, truncated, another token's id with this secret, garbage: refused alike
    let s = week.secret.as_str();
    let mut flipped = s.to_string().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let other_id = s.replacen(&week.id, &forever.id, 1);
    for bad in [
        String::from_utf8(flipped).unwrap(),
        s[..s.len() - 1].to_string(),
        other_id,
        "slk_".into(),
        "\u{0}\u{ffff}".into(),
        "x".repeat(100_000),
    ] {
        let e = lake.authenticate_token(&bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert!(
            !e.to_string().contains(&bad[..bad.len().min(20)]) || bad.len() < 5,
            "{e}"
        );
    }
    // eight days later the week's token has expired; the other still works
    now.fetch_add(8 * DAY_MS, Ordering::Relaxed);
    assert!(lake.authenticate_token(&week.secret).await.is_err());
    assert!(!lake.token_valid(&week.id).await.unwrap());
    let listed = admin.access().tokens(Some("ana")).await.unwrap();
    assert!(listed.iter().any(|t| t.id == week.id && t.expired));
    assert_eq!(lake.authenticate_token(&forever.secret).await.unwrap(), "ana");
    // dropping the principal ends its tokens
    admin.sql("DROP PRINCIPAL ana").await.unwrap();
    assert!(lake.authenticate_token(&forever.secret).await.is_err());
    assert!(!lake.principal_exists("ana").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_input_is_refused_by_name() {
    let (_dir, lake, _) = lake().await;
    let access = lake.session("admin");
    let access = access.access();
    let e = access.set_password("ana", "").await.unwrap_err().to_string();
    assert!(e.contains("may not be empty"), "{e}");
    let long = "p".repeat(5000);
    let e = access.set_password("ana", &long).await.unwrap_err().to_string();
    assert!(e.contains("at most 1024 bytes") && !e.contains(&long[..100]), "{e}");
    let e = access.set_password("analysts", "pw").await.unwrap_err().to_string();
    assert!(e.contains("is a role"), "{e}");
    let e = access.set_password("ghost", "pw").await.unwrap_err().to_string();
    assert!(e.contains("no such principal"), "{e}");
    let e = access.create_token("ana", "a\nb", None).await.unwrap_err().to_string();
    assert!(e.contains("token label"), "{e}");
    let e = access
        .revoke_token("ana", "000000000000")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no such token"), "{e}");
    // a valid duration far in the future does not overflow
    let t = access.create_token("ana", "", Some(Duration::MAX)).await.unwrap();
    assert_eq!(t.expires_ms, Some(i64::MAX));
    assert_eq!(lake.authenticate_token(&t.secret).await.unwrap(), "ana");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_revives_no_revoked_token_and_no_old_password() {
    let (dir, lake, _) = lake().await;
    let admin = lake.session("admin");
    admin.access().set_password("ana", "before the backup").await.unwrap();
    let old = admin.access().create_token("ana", "old", None).await.unwrap();
    let repo = admin
        .backups()
        .init(dir.path().join("repo").to_str().unwrap(), &Default::default())
        .await
        .unwrap();
    let backup = admin.backups().create(&repo).await.unwrap();
    admin.access().revoke_token("ana", &old.id).await.unwrap();

    // into a new lake: the principals come back without passwords or tokens
    let twin = admin.backups().empty_twin("memory://logins-restore").await.unwrap();
    twin.backups().restore(&repo, &backup.id).await.unwrap();
    let twin_lake = twin.lake().clone();
    assert!(twin_lake.principal_exists("ana").await.unwrap());
    assert!(twin_lake.authenticate_token(&old.secret).await.is_err());
    assert!(
        twin_lake
            .authenticate_password("ana", "before the backup")
            .await
            .is_err()
    );
    assert!(!scram_login(&twin_lake, "ana", "before the backup").await);
    let twin_admin = twin_lake.session("admin");
    assert!(twin_admin.access().tokens(None).await.unwrap().is_empty());

    // over a lake that has the principal: its current credentials stay
    twin_admin
        .access()
        .set_password("ana", "set in the twin")
        .await
        .unwrap();
    twin_admin
        .backups()
        .restore(&repo, &backup.id)
        .force(true)
        .await
        .unwrap();
    assert_eq!(
        twin_lake.authenticate_password("ana", "set in the twin").await.unwrap(),
        "ana"
    );
    assert!(
        twin_lake
            .authenticate_password("ana", "before the backup")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_users_mock_salt_is_the_same_after_a_restart() {
    let (dir, lake, _) = lake().await;
    let before = lake.scram_verifier("nobody").await.unwrap();
    let reopened = Lake::builder(dir.path()).open().await.unwrap();
    assert_eq!(reopened.scram_verifier("nobody").await.unwrap(), before);
    // and it is kept in the lake, not derived from anything a client knows
    assert!(
        walk(dir.path())
            .iter()
            .any(|p| p.ends_with("_credentials/mock-verifier-secret"))
    );
}
