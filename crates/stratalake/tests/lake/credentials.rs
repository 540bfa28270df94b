//! Cloud stores as people configure them: an `http://` endpoint without `allow_http`, a missing
//! bucket or container reported in one line, and Azure Blob storage through azurite (started by
//! scripts/test.sh: AZURITE_BLOB_STORAGE_URL, STRATALAKE_TEST_AZURE_CONTAINER). Credentials from
//! `~/.aws` profiles and the error when there are none are tested on the binary (cli.rs), whose
//! environment a test can choose.

use std::collections::BTreeMap;

use bytes::Bytes;
use stratalake::Lake;
use stratalake::table::{Error as TableError, Store};

use super::*;

/// The S3 test server's endpoint and bucket, or `None` outside scripts/test.sh (refused in CI).
fn s3() -> Option<(String, String)> {
    let Ok(endpoint) = std::env::var("STRATALAKE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 tests: run them through scripts/test.sh"
        );
        eprintln!("STRATALAKE_TEST_S3_ENDPOINT not set: run through scripts/test.sh");
        return None;
    };
    let bucket = std::env::var("STRATALAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "stratalake-test".into());
    Some((endpoint, bucket))
}

/// azurite's blob endpoint and the test container, as for [`s3`].
fn azurite() -> Option<(String, String)> {
    let Ok(endpoint) = std::env::var("AZURITE_BLOB_STORAGE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the Azure tests: run them through scripts/test.sh"
        );
        eprintln!("AZURITE_BLOB_STORAGE_URL not set: run through scripts/test.sh");
        return None;
    };
    let container = std::env::var("STRATALAKE_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "stratalake-test".into());
    Some((endpoint, container))
}

fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The one-line reason of a store configuration error, or a panic showing what came instead.
fn config_reason(e: TableError) -> String {
    match e {
        TableError::StoreConfig { reason, .. } => {
            assert!(!reason.contains('\n') && !reason.contains("<?xml"), "{reason}");
            reason
        }
        other => panic!("expected a store configuration error, got {other}"),
    }
}

#[tokio::test]
async fn s3_http_endpoint_needs_no_allow_http() {
    let Some((endpoint, bucket)) = s3() else { return };
    let url = format!("s3://{bucket}/http-{}", std::process::id());
    let o = opts(&[
        ("endpoint", &endpoint),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ]);
    let store = Store::open(&url, &o).unwrap();
    store.put("a/b", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(store.get("a/b").await.unwrap(), Bytes::from_static(b"1"));
    store.check_conditional_create().await.unwrap();
    assert_eq!(store.delete_prefix("").await.unwrap(), 1);
}

#[tokio::test]
async fn s3_missing_bucket_is_one_line_naming_it() {
    let Some((endpoint, _)) = s3() else { return };
    let bucket = format!("stratalake-missing-{}", std::process::id());
    let url = format!("s3://{bucket}/p");
    let o = opts(&[
        ("endpoint", &endpoint),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ]);
    let store = Store::open(&url, &o).unwrap();
    let expect = format!("bucket {bucket:?} does not exist at {endpoint}");
    // a read must not take the missing bucket for a missing object
    let r = config_reason(store.get_opt("stratalake.toml").await.unwrap_err());
    assert!(r.starts_with(&expect), "{r}");
    let r = config_reason(store.put_create("x", Bytes::from_static(b"1")).await.unwrap_err());
    assert!(r.starts_with(&expect), "{r}");
    let r = config_reason(store.list("").await.unwrap_err());
    assert!(r.starts_with(&expect), "{r}");
    // and through a lake: one line, naming the bucket
    let lake = lake_on_err(&url, &o).await;
    assert!(lake.contains(&expect) && !lake.contains('\n'), "{lake}");
}

/// The error of opening and using a lake on `url`, as text.
async fn lake_on_err(url: &str, options: &BTreeMap<String, String>) -> String {
    let mut cfg = stratalake::LakeConfig::single_tier(url);
    cfg.tiers[0].options = options.clone();
    match stratalake::LakeBuilder::from_config(cfg)
        .key_provider(std::sync::Arc::new(stratalake::crypto::MemoryKeyProvider::new()))
        .open()
        .await
    {
        Err(e) => e.to_string(),
        Ok(lake) => lake
            .session("admin")
            .create_namespace("x")
            .await
            .unwrap_err()
            .to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_store_on_azurite() {
    let Some((_, container)) = azurite() else { return };
    let url = format!("az://{container}/conf-{}", std::process::id());
    super::conformance::suite(lake_on(&url, &[("use_emulator", "true")], 5).await).await;
}

#[tokio::test]
async fn azure_http_endpoint_and_missing_container() {
    let Some((endpoint, container)) = azurite() else { return };
    // azurite's published development account and key (not a secret)
    let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let account_url = format!("{endpoint}/devstoreaccount1");
    let o = opts(&[
        ("endpoint", &account_url),
        ("account_name", "devstoreaccount1"),
        ("access_key", key),
    ]);
    let url = format!("abfs://{container}/http-{}", std::process::id());
    let store = Store::open(&url, &o).unwrap();
    store.put("a/b", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(store.get("a/b").await.unwrap(), Bytes::from_static(b"1"));
    store.check_conditional_create().await.unwrap();
    assert_eq!(store.delete_prefix("").await.unwrap(), 1);

    let missing = format!("stratalake-missing-{}", std::process::id());
    let store = Store::open(&format!("az://{missing}/p"), &opts(&[("use_emulator", "true")])).unwrap();
    let r = config_reason(store.get_opt("stratalake.toml").await.unwrap_err());
    assert!(
        r.starts_with(&format!("container {missing:?} does not exist at {account_url}")),
        "{r}"
    );
    let r = config_reason(store.put("x", Bytes::from_static(b"1")).await.unwrap_err());
    assert!(r.contains("does not exist"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azurite_conditional_create_has_one_winner() {
    let Some((_, container)) = azurite() else { return };
    let url = format!("az://{container}/race-{}", std::process::id());
    let store = Store::open(&url, &opts(&[("use_emulator", "true")])).unwrap();
    for round in 0..20 {
        let tasks: Vec<_> = (0..8u8)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move { store.put_create(&format!("r{round}"), Bytes::from(vec![w])).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (w, t) in tasks.into_iter().enumerate() {
            if t.await.unwrap().unwrap() {
                winners.push(w as u8);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(store.get(&format!("r{round}")).await.unwrap(), Bytes::from(winners));
    }
    store.delete_prefix("").await.unwrap();
}

/// A lake whose `stratalake.toml` lies in its store: whoever can write the store must not be able
/// to point the lake's tiers at another endpoint or other credentials through that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_in_the_store_chooses_no_credentials_or_endpoints() {
    let keys = tempfile::tempdir().unwrap();
    let url = format!("memory://untrusted-config-{}", std::process::id());
    let key_file = keys.path().join("master.keys");
    Lake::builder(&url)
        .key_file(&key_file)
        .admin("admin")
        .create()
        .await
        .unwrap();
    let open = || Lake::builder(&url).key_file(&key_file).open();
    assert_eq!(
        open().await.unwrap().session("admin").namespaces().await.unwrap(),
        ["default"]
    );

    let store = Store::open(&url, &BTreeMap::new()).unwrap();
    let original = store.get_opt(stratalake::CONFIG_FILE).await.unwrap().unwrap();
    for (key, value) in [
        ("endpoint", "https://attacker.example"),
        ("secret_access_key", "sk-planted-9f2c"),
        ("profile", "attacker"),
        ("allow_http", "true"),
    ] {
        let mut cfg = stratalake::LakeConfig::parse(std::str::from_utf8(&original).unwrap()).unwrap();
        cfg.tiers[0].options.insert(key.into(), value.into());
        store
            .put(stratalake::CONFIG_FILE, Bytes::from(cfg.to_toml()))
            .await
            .unwrap();
        let e = open().await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("\"{key}\"")) && e.contains("stratalake.toml"),
            "{e}"
        );
        assert!(!e.contains(value), "the planted value is echoed: {e}");
    }
    // nor may it choose a key file on this machine: the lake wrote no path there, and one
    // planted is never opened (without the builder's key file the lake does not open at all)
    assert!(
        !std::str::from_utf8(&original)
            .unwrap()
            .contains(keys.path().to_str().unwrap())
    );
    let mut cfg = stratalake::LakeConfig::parse(std::str::from_utf8(&original).unwrap()).unwrap();
    cfg.keys.file = Some(key_file.display().to_string());
    store
        .put(stratalake::CONFIG_FILE, Bytes::from(cfg.to_toml()))
        .await
        .unwrap();
    let e = Lake::builder(&url).open().await.unwrap_err().to_string();
    assert!(e.contains("STRATALAKE_KEY_FILE"), "{e}");
    // the file as the lake wrote it opens again
    store.put(stratalake::CONFIG_FILE, original).await.unwrap();
    open().await.unwrap();
}
