//! The conformance suite every [`KeyProvider`] passes: the built-in providers run it in their
//! tests, and an external KMS provider should run it in its own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::{Error, KeyId, KeyProvider};

/// Checks what every [`KeyProvider`] must do, panicking with the broken rule. `managed`: the
/// provider creates and destroys versions itself (`rotate`/`destroy` work); otherwise both must
/// answer `Unsupported`.
///
/// The provider must start empty or hold only version 1 of the levels `internal` and `public`;
/// a managed provider ends with `internal` shredded, so run it against a scratch key store
/// (a test KMS account, a temporary key file).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stratalake_crypto::MemoryKeyProvider;
/// stratalake_crypto::conformance::check_provider(&MemoryKeyProvider::new(), true).await;
/// # });
/// ```
pub async fn check_provider(p: &dyn KeyProvider, managed: bool) {
    let (id1, k1) = p.current("internal").await.unwrap();
    assert_eq!(p.get(&id1).await.unwrap(), k1);
    assert_eq!(p.current("internal").await.unwrap().0, id1, "current is stable");
    let (pid, pk) = p.current("public").await.unwrap();
    assert_ne!(pk, k1, "levels have their own keys");
    // get never substitutes another version
    let absent = KeyId::new("internal", id1.version + 50);
    assert!(matches!(p.get(&absent).await, Err(Error::KeyNotFound { .. })));
    // keys never show in Debug, describe or errors
    let secret = B64.encode(k1.expose());
    let e = p.get(&absent).await.unwrap_err().to_string();
    for shown in [format!("{p:?}"), p.describe(), e] {
        assert!(!shown.contains(&secret), "{shown}");
    }
    if managed {
        let id2 = p.rotate("internal").await.unwrap();
        assert_eq!(id2.version, id1.version + 1);
        let (cur, k2) = p.current("internal").await.unwrap();
        assert_eq!(cur, id2);
        assert_ne!(k2, k1);
        assert_eq!(p.get(&id1).await.unwrap(), k1, "older versions stay readable");
        assert_eq!(
            p.versions("internal").await.unwrap(),
            vec![(id1.clone(), false), (id2.clone(), false)]
        );
        assert_eq!(
            p.destroy("internal", Some(id1.version)).await.unwrap(),
            vec![id1.clone()]
        );
        assert!(matches!(p.get(&id1).await, Err(Error::KeyDestroyed { .. })));
        assert_eq!(p.current("internal").await.unwrap().0, id2);
        // shredding: every version, and no new one afterwards
        assert_eq!(p.destroy("internal", None).await.unwrap(), vec![id2.clone()]);
        assert!(matches!(p.get(&id2).await, Err(Error::KeyDestroyed { .. })));
        assert!(matches!(p.current("internal").await, Err(Error::KeyDestroyed { .. })));
        assert!(matches!(p.rotate("internal").await, Err(Error::KeyDestroyed { .. })));
        assert!(matches!(
            p.destroy("nosuch", Some(1)).await,
            Err(Error::KeyNotFound { .. })
        ));
        assert_eq!(p.get(&pid).await.unwrap(), pk, "other levels are untouched");
    } else {
        let e = p.rotate("internal").await.unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        assert!(matches!(
            p.destroy("internal", None).await,
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(p.versions("internal").await.unwrap(), vec![(id1, false)]);
    }
}
