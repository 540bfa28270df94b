//! The conformance suite every [`KeyProvider`] passes: the built-in providers run it in their
//! tests, and an external KMS provider should run it in its own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::{DataKey, Error, KeyContext, KeyId, KeyProvider, MasterKey, WrappedKey, unwrap_key, wrap_key};

/// Checks what every [`KeyProvider`] must do, panicking with the broken rule. `managed`: the
/// provider creates and destroys versions itself (`rotate`/`destroy` work); otherwise both must
/// answer `Unsupported`.
///
/// A provider that releases master keys (`current`/`get`) is also checked to wrap in the built-in
/// format, byte-compatible with [`wrap_key`] / [`unwrap_key`]; one that does not (a KMS) must
/// answer `Unsupported` to both and is checked through `current_id`, `wrap` and `unwrap` only.
///
/// The provider must start empty or hold only version 1 of the levels `internal` and `public`;
/// it may be asked to create the level `conformance-unknown`, and a managed provider ends with
/// `internal` shredded, so run it against a scratch key store (a test KMS account, a temporary
/// key file).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stratalake_crypto::MemoryKeyProvider;
/// stratalake_crypto::conformance::check_provider(&MemoryKeyProvider::new(), true).await;
/// # });
/// ```
pub async fn check_provider(p: &dyn KeyProvider, managed: bool) {
    let id1 = p.current_id("internal").await.unwrap();
    assert_eq!(id1.classification, "internal");
    assert_eq!(p.current_id("internal").await.unwrap(), id1, "current is stable");
    let pid = p.current_id("public").await.unwrap();
    assert_eq!(pid.classification, "public");
    let absent = KeyId::new("internal", id1.version + 50);

    // Master keys, where the provider releases them at all.
    let mut secrets = Vec::new();
    let released = match p.current("internal").await {
        Ok((id, k1)) => {
            assert_eq!(id, id1, "current and current_id agree");
            assert_eq!(p.get(&id1).await.unwrap(), k1);
            let (cur, pk) = p.current("public").await.unwrap();
            assert_eq!(cur, pid);
            assert_ne!(pk, k1, "levels have their own keys");
            // get never substitutes another version
            assert!(matches!(p.get(&absent).await, Err(Error::KeyNotFound { .. })));
            secrets.extend(shown_forms(k1.expose()));
            secrets.extend(shown_forms(pk.expose()));
            Some((k1, pk))
        }
        Err(Error::Unsupported { .. }) => {
            let e = p.get(&id1).await.unwrap_err();
            assert!(
                matches!(e, Error::Unsupported { .. }),
                "a provider that does not release the current key releases none: {e}"
            );
            None
        }
        Err(e) => panic!("current of a level that has a current id: {e}"),
    };

    let mut errors = Vec::new();
    let (ctx, dk, sealed) = check_wrapping(p, &id1, &pid, &mut errors).await;
    secrets.extend(shown_forms(dk.expose()));
    let pctx = KeyContext {
        role: "public".into(),
        ..ctx.clone()
    };
    let pdk = DataKey::generate().unwrap();
    let (_, psealed) = p.wrap("public", pdk.expose(), &pctx).await.unwrap();

    if let Some((k1, _)) = &released {
        // The built-in format: what the provider wraps opens with the master key, and the other
        // way round, so wrapped keys written before providers wrapped them still open.
        let stored = WrappedKey {
            key: id1.clone(),
            sealed: B64.encode(&sealed),
        };
        assert_eq!(
            unwrap_key(k1, &stored, &ctx).unwrap(),
            dk,
            "wrap uses the built-in format"
        );
        let old = wrap_key(k1, &id1, &dk, &ctx).unwrap();
        let raw = B64.decode(&old.sealed).unwrap();
        assert_eq!(
            p.unwrap(&id1, &raw, &ctx).await.unwrap().as_slice(),
            dk.expose(),
            "unwrap opens the built-in format"
        );
    }

    // keys never show in Debug, describe or errors
    errors.push(p.get(&absent).await.unwrap_err());
    let mut shown = vec![format!("{p:?}"), p.describe()];
    shown.extend(errors.iter().flat_map(|e| [e.to_string(), format!("{e:?}")]));
    for text in &shown {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "key material shown: {text}");
        }
    }

    if managed {
        check_managed(p, &id1, &ctx, &dk, &sealed, released.as_ref().map(|(k1, _)| k1)).await;
        assert_eq!(
            p.unwrap(&pid, &psealed, &pctx).await.unwrap().as_slice(),
            pdk.expose(),
            "other levels are untouched"
        );
        if let Some((_, pk)) = &released {
            assert_eq!(&p.get(&pid).await.unwrap(), pk, "other levels are untouched");
        }
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

/// Text forms a key could be shown in.
fn shown_forms(key: &[u8]) -> Vec<String> {
    vec![
        B64.encode(key),
        hex::encode(key),
        hex::encode_upper(key),
        format!("{key:?}"),
    ]
}

/// Wrap and unwrap under `internal` (current `id1`): round trip, and every way to get it wrong
/// refused. Returns the context, data key and sealed bytes of one wrapped key, and pushes the
/// errors seen onto `errors` (checked for key material by the caller).
async fn check_wrapping(
    p: &dyn KeyProvider,
    id1: &KeyId,
    pid: &KeyId,
    errors: &mut Vec<Error>,
) -> (KeyContext, DataKey, Vec<u8>) {
    let ctx = KeyContext {
        table_id: "conformance-table".into(),
        file: "data/part-0.parquet".into(),
        role: "internal".into(),
    };
    let dk = DataKey::generate().unwrap();
    let (wid, sealed) = p.wrap("internal", dk.expose(), &ctx).await.unwrap();
    assert_eq!(&wid, id1, "wrap seals under the current key");
    assert!(
        !sealed.windows(dk.expose().len()).any(|w| w == dk.expose()),
        "the sealed bytes hold the plaintext key"
    );
    // round trip
    assert_eq!(p.unwrap(&wid, &sealed, &ctx).await.unwrap().as_slice(), dk.expose());

    // another key id: another level, or a version that does not exist
    let e = p.unwrap(pid, &sealed, &ctx).await.unwrap_err();
    assert!(
        matches!(&e, Error::UnwrapFailed { id, .. } if id == pid),
        "a key wrapped under {id1} opened (or failed oddly) as {pid}: {e}"
    );
    errors.push(e);
    let absent = KeyId::new("internal", id1.version + 50);
    let e = p.unwrap(&absent, &sealed, &ctx).await.unwrap_err();
    assert!(matches!(&e, Error::KeyNotFound { id, .. } if id == &absent), "{e}");
    errors.push(e);

    // another context: each part of it is bound
    let moved = [
        KeyContext {
            table_id: "another-table".into(),
            ..ctx.clone()
        },
        KeyContext {
            file: "data/part-1.parquet".into(),
            ..ctx.clone()
        },
        KeyContext {
            role: "footer".into(),
            ..ctx.clone()
        },
    ];
    for other in &moved {
        let e = p.unwrap(&wid, &sealed, other).await.unwrap_err();
        assert!(matches!(e, Error::UnwrapFailed { .. }), "moved to {other}: {e}");
        errors.push(e);
    }

    // tampered: a flipped bit anywhere, a truncation, an extension
    let mut tampered = Vec::new();
    for i in [0, sealed.len() / 2, sealed.len() - 1] {
        let mut t = sealed.clone();
        t[i] ^= 0x01;
        tampered.push(t);
    }
    tampered.push(sealed[..sealed.len() - 1].to_vec());
    tampered.push([sealed.as_slice(), &[0]].concat());
    tampered.push(Vec::new());
    for t in &tampered {
        let e = p.unwrap(&wid, t, &ctx).await.unwrap_err();
        assert!(
            matches!(e, Error::UnwrapFailed { .. } | Error::Malformed { .. }),
            "tampered sealed key ({} bytes): {e}",
            t.len()
        );
        errors.push(e);
    }

    // an unknown classification: named in the error
    let unknown = KeyId::new("conformance-unknown", 1);
    let e = p.unwrap(&unknown, &sealed, &ctx).await.unwrap_err();
    assert!(matches!(&e, Error::KeyNotFound { id, .. } if id == &unknown), "{e}");
    assert!(e.to_string().contains("conformance-unknown"), "{e}");
    errors.push(e);
    // wrapping under it either creates its first version or fails naming it
    match p.wrap("conformance-unknown", dk.expose(), &ctx).await {
        Ok((id, s)) => {
            assert_eq!(id.classification, "conformance-unknown");
            assert_eq!(p.unwrap(&id, &s, &ctx).await.unwrap().as_slice(), dk.expose());
        }
        Err(e) => {
            assert!(matches!(e, Error::KeyNotFound { .. }), "{e}");
            assert!(e.to_string().contains("conformance-unknown"), "{e}");
            errors.push(e);
        }
    }
    (ctx, dk, sealed)
}

/// Rotation, retirement and shredding, seen through ids and wrapping (and through the key bytes
/// where the provider releases them: `k1`).
async fn check_managed(
    p: &dyn KeyProvider,
    id1: &KeyId,
    ctx: &KeyContext,
    dk: &DataKey,
    sealed1: &[u8],
    k1: Option<&MasterKey>,
) {
    let id2 = p.rotate("internal").await.unwrap();
    assert_eq!(id2.version, id1.version + 1);
    assert_eq!(p.current_id("internal").await.unwrap(), id2);
    let (wid, sealed2) = p.wrap("internal", dk.expose(), ctx).await.unwrap();
    assert_eq!(wid, id2, "wrap seals under the new version");
    assert!(
        matches!(p.unwrap(id1, &sealed2, ctx).await, Err(Error::UnwrapFailed { .. })),
        "a new version is a new key"
    );
    assert_eq!(
        p.unwrap(id1, sealed1, ctx).await.unwrap().as_slice(),
        dk.expose(),
        "older versions stay readable"
    );
    if let Some(k1) = k1 {
        let (cur, k2) = p.current("internal").await.unwrap();
        assert_eq!(cur, id2);
        assert_ne!(&k2, k1);
        assert_eq!(&p.get(id1).await.unwrap(), k1, "older versions stay readable");
    }
    assert_eq!(
        p.versions("internal").await.unwrap(),
        vec![(id1.clone(), false), (id2.clone(), false)]
    );

    // retiring one version
    assert_eq!(
        p.destroy("internal", Some(id1.version)).await.unwrap(),
        vec![id1.clone()]
    );
    assert!(matches!(
        p.unwrap(id1, sealed1, ctx).await,
        Err(Error::KeyDestroyed { .. })
    ));
    if k1.is_some() {
        assert!(matches!(p.get(id1).await, Err(Error::KeyDestroyed { .. })));
    }
    assert_eq!(p.current_id("internal").await.unwrap(), id2);
    assert_eq!(p.unwrap(&id2, &sealed2, ctx).await.unwrap().as_slice(), dk.expose());

    // shredding: every version, and no new one afterwards
    assert_eq!(p.destroy("internal", None).await.unwrap(), vec![id2.clone()]);
    assert!(matches!(
        p.unwrap(&id2, &sealed2, ctx).await,
        Err(Error::KeyDestroyed { .. })
    ));
    assert!(matches!(
        p.current_id("internal").await,
        Err(Error::KeyDestroyed { .. })
    ));
    assert!(matches!(
        p.wrap("internal", dk.expose(), ctx).await,
        Err(Error::KeyDestroyed { .. })
    ));
    assert!(matches!(p.rotate("internal").await, Err(Error::KeyDestroyed { .. })));
    if k1.is_some() {
        assert!(matches!(p.get(&id2).await, Err(Error::KeyDestroyed { .. })));
        assert!(matches!(p.current("internal").await, Err(Error::KeyDestroyed { .. })));
    }
    assert!(matches!(
        p.destroy("nosuch", Some(1)).await,
        Err(Error::KeyNotFound { .. })
    ));
}
