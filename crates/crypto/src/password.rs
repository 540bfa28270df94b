//! Credentials of principals: password hashes, SCRAM-SHA-256 verifiers and API tokens. Nothing
//! here keeps a password or a token in clear; what is stored cannot be used to log in.
//!
//! * [`hash_password`] / [`verify_password`]: argon2id (the `argon2` crate, its default
//!   parameters: 19 MiB, 2 passes) in the PHC string format, for logins that send the password
//!   (Flight SQL Basic, HTTP).
//! * [`ScramVerifier`]: what PostgreSQL stores for SCRAM-SHA-256 (RFC 5802, RFC 7677):
//!   `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. It proves a client knows the
//!   password without the password crossing the wire, and holding it does not let anyone log in
//!   (the salted password is never kept). [`ScramServer`] runs the server side of an exchange.
//! * [`ApiToken`]: random bearer tokens, `slk_<id>_<secret>`; only the id and a SHA-256 of the
//!   whole token are stored (a token has 256 random bits: no slow hash is needed).
//!
//! ```
//! use stratalake_crypto::password::{ScramVerifier, hash_password, verify_password};
//! let phc = hash_password("correct horse").unwrap();
//! assert!(phc.starts_with("$argon2id$"));
//! assert!(verify_password(&phc, "correct horse"));
//! assert!(!verify_password(&phc, "Correct horse"));
//! let v = ScramVerifier::new("correct horse").unwrap();
//! assert!(v.to_string().starts_with("SCRAM-SHA-256$4096:"));
//! assert_eq!(ScramVerifier::parse(&v.to_string()).unwrap(), v);
//! assert_eq!(format!("{v:?}"), "ScramVerifier(<redacted>)");
//! ```

use std::borrow::Cow;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::mac::{ct_eq, hmac_sha256};
use crate::{Error, Result, random_bytes};

/// Iterations of PBKDF2 in new SCRAM verifiers (PostgreSQL's default; RFC 7677 asks for at least
/// 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Passwords longer than this are refused (argon2 and PBKDF2 take any length; a limit keeps a
/// login from costing more than it should).
pub const MAX_PASSWORD_LEN: usize = 1024;

fn check_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::InvalidInput("a password may not be empty".into()));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::InvalidInput(format!(
            "a password may have at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// The argon2id hash of `password` as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`), with a
/// fresh random salt.
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `phc` (from [`hash_password`]). A malformed `phc`
/// never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// SASLprep (RFC 4013) of a password as PostgreSQL clients apply it; a password it rejects is
/// used as it is (libpq does the same).
fn normalize(password: &str) -> Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A SCRAM-SHA-256 verifier: salt, iteration count, StoredKey = H(HMAC(SaltedPassword,
/// "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key").
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt (16 random bytes for new verifiers).
    pub salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(<redacted>)")
    }
}

impl ScramVerifier {
    /// A verifier for `password` with a fresh salt and [`SCRAM_ITERATIONS`].
    pub fn new(password: &str) -> Result<Self> {
        check_password(password)?;
        let mut salt = vec![0u8; 16];
        random_bytes(&mut salt)?;
        Ok(Self::derive(password, &salt, SCRAM_ITERATIONS))
    }

    /// The verifier of `password` with this salt and iteration count.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = zeroize::Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
            normalize(password).as_bytes(),
            salt,
            iterations,
        ));
        let client_key = zeroize::Zeroizing::new(hmac_sha256(&salted[..], b"Client Key"));
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key[..]),
            server_key: hmac_sha256(&salted[..], b"Server Key"),
        }
    }

    /// A verifier no password matches, the same for the same `user` and `secret`: what a server
    /// answers for a user that does not exist, so that the exchange looks like a real one and
    /// does not tell who has an account.
    pub fn mock(secret: &[u8], user: &str) -> Self {
        let seed = hmac_sha256(secret, format!("scram mock {user}").as_bytes());
        Self {
            iterations: SCRAM_ITERATIONS,
            salt: seed[..16].to_vec(),
            stored_key: hmac_sha256(&seed, b"stored"),
            server_key: hmac_sha256(&seed, b"server"),
        }
    }

    /// Parse PostgreSQL's text form `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// (base64). The error says what is wrong, never quoting the keys.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |what: &str| Error::InvalidInput(format!("not a SCRAM-SHA-256 verifier: {what}"));
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| bad("it does not start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| bad("no keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| bad("no salt"))?;
        let (stored, server) = keys.split_once(':').ok_or_else(|| bad("no server key"))?;
        let iterations: u32 = iterations.parse().map_err(|_| bad("the iteration count"))?;
        if iterations == 0 {
            return Err(bad("the iteration count is 0"));
        }
        let salt = STANDARD.decode(salt).map_err(|_| bad("the salt is not base64"))?;
        let key = |s: &str, what: &str| -> Result<[u8; 32]> {
            STANDARD
                .decode(s)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| bad(what))
        };
        Ok(Self {
            iterations,
            salt,
            stored_key: key(stored, "the stored key")?,
            server_key: key(server, "the server key")?,
        })
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client's message does not follow RFC 5802 (named part).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which this exchange does not offer.
    #[error("SCRAM channel binding is not supported here: connect with channel_binding=disable or prefer")]
    ChannelBinding,
    /// The proof does not match: wrong password (or unknown user).
    #[error("password authentication failed")]
    WrongProof,
}

/// The server side of one SCRAM-SHA-256 exchange (no channel binding): [`ScramServer::start`]
/// takes the client-first message and gives the server-first message; [`ScramServer::finish`]
/// checks the client-final message's proof and gives the server-final message.
///
/// ```
/// use stratalake_crypto::password::{ScramServer, ScramVerifier};
/// // RFC 7677's example: user "user", password "pencil"
/// let salt = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, "W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
/// let v = ScramVerifier::derive("pencil", &salt, 4096);
/// let (server, first) = ScramServer::start_with_nonce(&v, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
/// assert_eq!(first, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
/// let last = server.finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
/// assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
/// ```
pub struct ScramServer {
    verifier: ScramVerifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramServer(..)")
    }
}

/// Messages longer than this are refused before they are parsed.
const MAX_SCRAM_MESSAGE: usize = 4096;

impl ScramServer {
    /// Start an exchange against `verifier` (a [`ScramVerifier::mock`] for an unknown user) with a
    /// fresh server nonce.
    pub fn start(verifier: &ScramVerifier, client_first: &[u8]) -> std::result::Result<(Self, String), ScramError> {
        let mut n = [0u8; 18];
        random_bytes(&mut n).map_err(|_| ScramError::Malformed("no randomness for a nonce"))?;
        Self::start_with_nonce(verifier, client_first, &STANDARD.encode(n))
    }

    /// [`ScramServer::start`] with a given server nonce (printable, no comma): for tests against
    /// published vectors. Servers use [`ScramServer::start`].
    pub fn start_with_nonce(
        verifier: &ScramVerifier,
        client_first: &[u8],
        server_nonce: &str,
    ) -> std::result::Result<(Self, String), ScramError> {
        if client_first.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::Malformed("client-first message too long"));
        }
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
        // gs2-header: "n,," (no binding), "y,," (client could bind, thinks we cannot), "p=..."
        let (cbind, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("client-first has no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("GS2 channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("client-first has no GS2 header"))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("GS2 authorization identity"));
        }
        let gs2_header = format!("{cbind},{authzid},");
        // client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions]
        let mut client_nonce = None;
        for attr in bare.split(',') {
            if attr.starts_with("m=") {
                return Err(ScramError::Malformed("mandatory extension"));
            }
            if let Some(r) = attr.strip_prefix("r=") {
                client_nonce = Some(r);
            }
        }
        let client_nonce = client_nonce.ok_or(ScramError::Malformed("client-first has no nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
            return Err(ScramError::Malformed("client nonce"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Self {
                verifier: verifier.clone(),
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                gs2_header,
            },
            server_first,
        ))
    }

    /// Check the client-final message; on success the server-final message (`v=...`), which
    /// proves to the client that the server knew the verifier.
    pub fn finish(self, client_final: &[u8]) -> std::result::Result<String, ScramError> {
        if client_final.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::Malformed("client-final message too long"));
        }
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final has no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or(ScramError::Malformed("client-final has no channel binding"))?;
        let binding = STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed("channel binding differs from the GS2 header"));
        }
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final has no nonce"))?;
        if !ct_eq(nonce.as_bytes(), self.nonce.as_bytes()) {
            return Err(ScramError::Malformed("nonce differs from the exchange's"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::WrongProof);
        }
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        if !ct_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

/// The client side of a SCRAM-SHA-256 exchange (no channel binding), as libpq runs it: for
/// tests and tools that log in to a Stratalake server from Rust.
///
/// ```
/// use stratalake_crypto::password::{ScramClient, ScramServer, ScramVerifier};
/// let v = ScramVerifier::new("pencil").unwrap();
/// let (client, first) = ScramClient::start("ana", "pencil").unwrap();
/// let (server, server_first) = ScramServer::start(&v, first.as_bytes()).unwrap();
/// let (client, fin) = client.respond(&server_first).unwrap();
/// let server_final = server.finish(fin.as_bytes()).unwrap();
/// assert!(client.verify(&server_final));
/// ```
pub struct ScramClient {
    password: zeroize::Zeroizing<String>,
    client_first_bare: String,
    client_nonce: String,
    server_signature: Option<[u8; 32]>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramClient(..)")
    }
}

impl ScramClient {
    /// Begin: the client-first message to send.
    pub fn start(user: &str, password: &str) -> Result<(Self, String)> {
        let mut n = [0u8; 18];
        random_bytes(&mut n)?;
        let client_nonce = STANDARD.encode(n);
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={client_nonce}");
        Ok((
            Self {
                password: zeroize::Zeroizing::new(password.to_string()),
                client_first_bare: bare.clone(),
                client_nonce,
                server_signature: None,
            },
            format!("n,,{bare}"),
        ))
    }

    /// Answer the server-first message: the client-final message to send.
    pub fn respond(mut self, server_first: &str) -> std::result::Result<(Self, String), ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = STANDARD.decode(v).ok();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok().filter(|i| *i > 0);
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::Malformed("server-first message"));
        };
        if !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::Malformed("server nonce does not extend the client's"));
        }
        let salted = zeroize::Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
            normalize(&self.password).as_bytes(),
            &salt,
            iterations,
        ));
        let client_key = hmac_sha256(&salted[..], b"Client Key");
        let server_key = hmac_sha256(&salted[..], b"Server Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&sha256(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        self.server_signature = Some(hmac_sha256(&server_key, auth.as_bytes()));
        Ok((self, format!("{without_proof},p={}", STANDARD.encode(proof))))
    }

    /// Whether the server-final message proves the server knew the verifier.
    pub fn verify(&self, server_final: &str) -> bool {
        match (
            server_final.strip_prefix("v=").and_then(|v| STANDARD.decode(v).ok()),
            &self.server_signature,
        ) {
            (Some(got), Some(want)) => ct_eq(&got, want),
            _ => false,
        }
    }
}

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "slk_";

/// A new API token: the secret to show once, and what to store (its id and hash).
#[derive(Clone)]
pub struct ApiToken {
    /// The whole token, `slk_<id>_<secret>`: shown to its owner once, never stored.
    pub secret: zeroize::Zeroizing<String>,
    /// Its id (12 hex digits): listed, used to revoke it.
    pub id: String,
    /// SHA-256 of the whole token, hex: what is stored.
    pub hash: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ApiToken {
    /// A fresh random token.
    ///
    /// ```
    /// use stratalake_crypto::password::ApiToken;
    /// let t = ApiToken::generate().unwrap();
    /// assert!(t.secret.starts_with("slk_"));
    /// assert_eq!(ApiToken::id_of(&t.secret), Some(t.id.as_str()));
    /// assert!(ApiToken::matches(&t.secret, &t.hash));
    /// assert!(!format!("{t:?}").contains(t.secret.as_str()));
    /// ```
    pub fn generate() -> Result<Self> {
        let mut id = [0u8; 6];
        random_bytes(&mut id)?;
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        random_bytes(&mut secret[..])?;
        let id = hex::encode(id);
        let token = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(&secret[..])));
        let hash = Self::hash_of(&token);
        Ok(Self {
            secret: token,
            id,
            hash,
        })
    }

    /// The id part of a presented token, if it has the token shape.
    pub fn id_of(token: &str) -> Option<&str> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43).then_some(id)
    }

    /// SHA-256 of a token, hex.
    pub fn hash_of(token: &str) -> String {
        hex::encode(sha256(token.as_bytes()))
    }

    /// Whether a presented token is the one whose stored hash is `hash` (constant time).
    pub fn matches(token: &str, hash: &str) -> bool {
        ct_eq(Self::hash_of(token).as_bytes(), hash.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the exchange, as RFC 5802 describes it.
    fn client_final(password: &str, salt: &[u8], iters: u32, first_bare: &str, server_first: &str) -> String {
        let nonce = server_first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iters);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored = sha256(&client_key);
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let sig = hmac_sha256(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn a_right_password_passes_and_a_wrong_one_or_a_mock_does_not() {
        let v = ScramVerifier::new("s3cret-Pa55").unwrap();
        for (password, ok) in [("s3cret-Pa55", true), ("s3cret-pa55", false), ("", false)] {
            let first = b"n,,n=ana,r=abcdefghijklmnop";
            let (server, server_first) = ScramServer::start(&v, first).unwrap();
            let fin = client_final(
                password,
                &v.salt,
                v.iterations,
                "n=ana,r=abcdefghijklmnop",
                &server_first,
            );
            assert_eq!(server.finish(fin.as_bytes()).is_ok(), ok, "{password:?}");
        }
        // an unknown user's mock: stable salt, no password passes
        let m = ScramVerifier::mock(b"server secret", "nobody");
        assert_eq!(m, ScramVerifier::mock(b"server secret", "nobody"));
        assert_ne!(m.salt, ScramVerifier::mock(b"server secret", "other").salt);
        let (server, server_first) = ScramServer::start(&m, b"n,,n=nobody,r=xyz").unwrap();
        let fin = client_final("anything", &m.salt, m.iterations, "n=nobody,r=xyz", &server_first);
        assert_eq!(server.finish(fin.as_bytes()).unwrap_err(), ScramError::WrongProof);
    }

    #[test]
    fn hostile_scram_messages_are_refused_by_name() {
        let v = ScramVerifier::new("pw").unwrap();
        let start = |m: &[u8]| ScramServer::start(&v, m).map(|_| ()).unwrap_err();
        assert_eq!(start(b"p=tls-server-end-point,,n=a,r=x"), ScramError::ChannelBinding);
        assert!(matches!(start(b"garbage"), ScramError::Malformed(_)));
        assert!(matches!(
            start(b"n,,n=a"),
            ScramError::Malformed("client-first has no nonce")
        ));
        assert!(matches!(
            start(b"n,,m=ext,n=a,r=x"),
            ScramError::Malformed("mandatory extension")
        ));
        assert!(matches!(start(&[0xff, 0xfe]), ScramError::Malformed(_)));
        assert!(matches!(
            start(&vec![b'a'; 10_000]),
            ScramError::Malformed("client-first message too long")
        ));
        let (server, first) = ScramServer::start(&v, b"n,,n=a,r=abc").unwrap();
        let nonce = first.split(',').next().unwrap().strip_prefix("r=").unwrap().to_string();
        // a replayed or altered nonce, a wrong binding, a short proof
        let e = |s: ScramServer, m: String| s.finish(m.as_bytes()).unwrap_err();
        let again = || ScramServer::start(&v, b"n,,n=a,r=abc").unwrap().0;
        assert!(matches!(
            e(server, "c=biws,r=abcX,p=AAAA".into()),
            ScramError::Malformed(_)
        ));
        assert!(matches!(
            e(again(), format!("c=eSws,r={nonce},p=AAAA")),
            ScramError::Malformed(_)
        ));
        assert!(matches!(e(again(), "c=biws".into()), ScramError::Malformed(_)));
        assert_eq!(
            ScramServer::start_with_nonce(&v, b"n,,n=a,r=abc", "S")
                .unwrap()
                .0
                .finish(b"c=biws,r=abcS,p=AAAA")
                .unwrap_err(),
            ScramError::WrongProof
        );
    }

    #[test]
    fn verifiers_parse_only_in_their_form_and_errors_quote_no_key() {
        let v = ScramVerifier::new("pw").unwrap();
        let text = v.to_string();
        for bad in [
            "md5abc".to_string(),
            "SCRAM-SHA-256$x:c2FsdA==$a:b".to_string(),
            "SCRAM-SHA-256$0:c2FsdA==$a:b".to_string(),
            text.replace("$4096:", "$4096;"),
            text[..text.len() - 4].to_string(),
        ] {
            let e = ScramVerifier::parse(&bad).unwrap_err().to_string();
            assert!(e.contains("not a SCRAM-SHA-256 verifier"), "{e}");
            assert!(!e.contains(&STANDARD.encode(v.stored_key)), "{e}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_oversized_or_empty_ones_are_refused() {
        let h = hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"));
        assert_ne!(h, hash_password("pw").unwrap(), "a fresh salt every time");
        assert!(verify_password(&h, "pw") && !verify_password(&h, "pW"));
        assert!(!verify_password("not a hash", "pw"));
        assert!(hash_password("").is_err());
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert!(!verify_password(&h, &"x".repeat(MAX_PASSWORD_LEN + 1)));
    }

    #[test]
    fn tokens_are_checked_by_shape_and_hash() {
        let t = ApiToken::generate().unwrap();
        assert_ne!(t.secret.as_str(), ApiToken::generate().unwrap().secret.as_str());
        assert!(!ApiToken::matches(&format!("{}x", t.secret.as_str()), &t.hash));
        for bad in ["", "slk_", "slk_zzzzzzzzzzzz_abc", "pat_0123456789ab_x"] {
            assert_eq!(ApiToken::id_of(bad), None, "{bad}");
        }
    }
}
