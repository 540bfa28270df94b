//! Credentials of principals: password hashes, SCRAM-SHA-256 verifiers and API tokens. Nothing
//! here keeps a password or a token in clear; what is stored cannot be used to log in.
//!
//! * [`hash_password`] / [`verify_password`]: argon2id (the `argon2` crate, its default
//!   parameters: 19 MiB, 2 passes) in the PHC string format, for logins that send the password
//!   (Flight SQL Basic, HTTP). [`check_password_hash`] checks a stored hash is one
//!   [`verify_password`] accepts (argon2id, bounded cost).
//! * [`ScramVerifier`]: what PostgreSQL stores for SCRAM-SHA-256 (RFC 5802, RFC 7677):
//!   `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. It proves a client knows the
//!   password without the password crossing the wire, and holding it does not let anyone log in
//!   (the salted password is never kept). [`ScramServer`] runs the server side of an exchange,
//!   [`ScramClient`] the client side.
//! * [`ApiToken`]: random bearer tokens, `slk_<id>_<secret>`; only the id and a SHA-256 of the
//!   whole token are stored (a token has 256 random bits: no slow hash is needed).
//!
//! Both password checks work on the same form of the password, its SASLprep (RFC 4013), so a
//! password passes both or neither; see [`hash_password`] for what that means.
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

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::mac::{ct_eq, hmac_sha256};
use crate::{Error, Result, random_bytes};

/// Iterations of PBKDF2 in new SCRAM verifiers (PostgreSQL's default; RFC 7677 asks for at least
/// 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The fewest PBKDF2 iterations accepted in a stored verifier or from a server (RFC 7677).
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;

/// The most PBKDF2 iterations accepted in a stored verifier or from a server: more would let a
/// tampered catalog or a malicious server make one login cost seconds of CPU.
pub const SCRAM_MAX_ITERATIONS: u32 = 1_000_000;

/// The longest salt accepted in a stored verifier (new ones have 16 bytes).
pub const SCRAM_MAX_SALT_LEN: usize = 64;

/// The most memory (KiB) an argon2id hash may ask for to be verified ([`hash_password`] uses
/// 19456).
pub const ARGON2_MAX_M_COST: u32 = 65536;

/// The most passes an argon2id hash may ask for to be verified ([`hash_password`] uses 2).
pub const ARGON2_MAX_T_COST: u32 = 10;

/// The most lanes an argon2id hash may ask for to be verified ([`hash_password`] uses 1).
pub const ARGON2_MAX_P_COST: u32 = 4;

/// Passwords longer than this are refused (argon2 and PBKDF2 take any length; a limit keeps a
/// login from costing more than it should).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// PHC strings longer than this are refused unparsed ([`hash_password`]'s have about 100 bytes).
const MAX_PHC_LEN: usize = 256;

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

/// The form of a password that is hashed (argon2id) and salted (SCRAM), here as by PostgreSQL
/// and libpq: its SASLprep (RFC 4013: non-ASCII spaces, U+200B zero-width space among them,
/// mapped to U+0020; characters such as U+00AD soft hyphen or U+2060 word joiner removed; NFKC).
///
/// A password SASLprep refuses (one with a prohibited character such as an ASCII control
/// character, an unassigned code point, or mixed-direction text) is used as its raw UTF-8 bytes,
/// as PostgreSQL and libpq do, so such a password still logs in from their clients. PostgreSQL
/// also counts a SASLprep that comes out empty (a password of only removed characters) as a
/// refusal, so such a password is used raw here too; [`hash_password`] and
/// [`ScramVerifier::new`] refuse to make a hash or verifier of one ([`prepared_new_password`]).
fn normalize(password: &str) -> Zeroizing<String> {
    match stringprep::saslprep(password) {
        Ok(prepared) if !prepared.is_empty() => Zeroizing::new(prepared.into_owned()),
        _ => Zeroizing::new(password.to_string()),
    }
}

/// A new password, checked ([`check_password`]) and in the form [`normalize`] gives; refused if
/// its SASLprep is empty (only characters SASLprep removes: a password that looks like nothing,
/// and one PostgreSQL would treat as not SASLprep-able). The error never quotes the password.
fn prepared_new_password(password: &str) -> Result<Zeroizing<String>> {
    check_password(password)?;
    match stringprep::saslprep(password) {
        Ok(prepared) if prepared.is_empty() => Err(Error::InvalidInput(
            "a password may not be empty after SASLprep: this one has only characters that SASLprep removes \
             (such as soft hyphens or zero-width joiners)"
                .into(),
        )),
        Ok(prepared) => Ok(Zeroizing::new(prepared.into_owned())),
        Err(_) => Ok(Zeroizing::new(password.to_string())),
    }
}

/// The argon2id hash of `password` as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`), with a
/// fresh random salt.
///
/// What is hashed is the password's SASLprep, as for [`ScramVerifier::new`], so that the two
/// checks of one password agree: `"I\u{ad}X"` and `"IX"` are the same password to both. A
/// password SASLprep refuses is hashed as it is (as PostgreSQL does for SCRAM); one that SASLprep
/// makes empty (only characters it removes) is refused, like an empty one or one longer than
/// [`MAX_PASSWORD_LEN`].
pub fn hash_password(password: &str) -> Result<String> {
    let prepared = prepared_new_password(password)?;
    Argon2::default()
        .hash_password(prepared.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `phc` (from [`hash_password`]), comparing its
/// SASLprep form as [`hash_password`] hashes it. A malformed `phc`, or one that
/// [`check_password_hash`] refuses (not argon2id, or a cost above [`ARGON2_MAX_M_COST`],
/// [`ARGON2_MAX_T_COST`], [`ARGON2_MAX_P_COST`]), never matches, and costs no hashing.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(hash) = parse_password_hash(phc) else {
        return false;
    };
    let prepared = normalize(password);
    if prepared.is_empty() {
        return false;
    }
    Argon2::default().verify_password(prepared.as_bytes(), &hash).is_ok()
}

/// Check that a stored password hash is one [`verify_password`] would check: a PHC string of
/// argon2id, version 19, with a salt and a hash, parameters `m`, `t` and `p` only, and at most
/// [`ARGON2_MAX_M_COST`] KiB, [`ARGON2_MAX_T_COST`] passes and [`ARGON2_MAX_P_COST`] lanes (what
/// [`hash_password`] makes is well within). For callers validating catalog entries: a hash this
/// refuses matches no password. The error says what is wrong, never quoting the hash.
///
/// ```
/// use stratalake_crypto::password::{check_password_hash, hash_password};
/// assert!(check_password_hash(&hash_password("pw").unwrap()).is_ok());
/// let tampered = hash_password("pw").unwrap().replace("m=19456", "m=4194304");
/// assert!(check_password_hash(&tampered).unwrap_err().to_string().contains("memory"));
/// ```
pub fn check_password_hash(phc: &str) -> Result<()> {
    parse_password_hash(phc).map(|_| ())
}

fn parse_password_hash(phc: &str) -> Result<PasswordHash> {
    let bad = |what: &str| Error::InvalidInput(format!("not an accepted argon2id password hash: {what}"));
    if phc.len() > MAX_PHC_LEN {
        return Err(bad(&format!("it is longer than {MAX_PHC_LEN} bytes")));
    }
    let hash = PasswordHash::new(phc).map_err(|_| bad("it is not a PHC string"))?;
    if hash.algorithm.as_str() != Algorithm::Argon2id.as_str() {
        return Err(bad("the algorithm is not argon2id"));
    }
    if hash.version.is_some_and(|v| v != u32::from(Version::V0x13)) {
        return Err(bad("the version is not 19"));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(bad("it has no salt or no hash"));
    }
    if hash
        .params
        .iter()
        .any(|(name, _)| !matches!(name.as_str(), "m" | "t" | "p"))
        || ["m", "t", "p"]
            .iter()
            .any(|name| hash.params.get_decimal(*name).is_none())
    {
        return Err(bad("its parameters are not exactly m, t and p (decimal)"));
    }
    let params = Params::try_from(&hash).map_err(|_| bad("its parameters are invalid"))?;
    if params.m_cost() > ARGON2_MAX_M_COST {
        return Err(bad(&format!("its memory cost is above {ARGON2_MAX_M_COST} KiB")));
    }
    if params.t_cost() > ARGON2_MAX_T_COST {
        return Err(bad(&format!("its time cost is above {ARGON2_MAX_T_COST} passes")));
    }
    if params.p_cost() > ARGON2_MAX_P_COST {
        return Err(bad(&format!("its parallelism is above {ARGON2_MAX_P_COST} lanes")));
    }
    Ok(hash)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A decimal number of digits only (no sign, no spaces), as SCRAM and PostgreSQL write them.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn iterations_in_range(iterations: u32) -> bool {
    (SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations)
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
    ///
    /// The password's SASLprep is what is salted, as PostgreSQL clients do; a password SASLprep
    /// refuses is used as it is (as PostgreSQL does). A password that is empty, longer than
    /// [`MAX_PASSWORD_LEN`], or empty after SASLprep (only characters it removes, such as
    /// U+00AD soft hyphen or U+200B zero-width space) is refused.
    pub fn new(password: &str) -> Result<Self> {
        let prepared = prepared_new_password(password)?;
        let mut salt = vec![0u8; 16];
        random_bytes(&mut salt)?;
        Ok(Self::from_prepared(prepared.as_bytes(), &salt, SCRAM_ITERATIONS))
    }

    /// The verifier of `password` (its SASLprep, or itself if SASLprep refuses it) with this salt
    /// and iteration count, checking nothing: for published vectors and tests. New verifiers come
    /// from [`ScramVerifier::new`].
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        Self::from_prepared(normalize(password).as_bytes(), salt, iterations)
    }

    fn from_prepared(prepared: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(prepared, salt, iterations));
        let client_key = Zeroizing::new(hmac_sha256(&salted[..], b"Client Key"));
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
    /// (base64), refusing what would make a login cost too much or too little: an iteration count
    /// outside [`SCRAM_MIN_ITERATIONS`]..=[`SCRAM_MAX_ITERATIONS`], a salt that is not base64,
    /// empty or longer than [`SCRAM_MAX_SALT_LEN`] bytes, keys that are not 32 bytes of base64.
    /// The error says what is wrong, never quoting the keys.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |what: &str| Error::InvalidInput(format!("not a SCRAM-SHA-256 verifier: {what}"));
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| bad("it does not start with SCRAM-SHA-256$"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| bad("no keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| bad("no salt"))?;
        let (stored, server) = keys.split_once(':').ok_or_else(|| bad("no server key"))?;
        let iterations = parse_decimal(iterations).ok_or_else(|| bad("the iteration count is not a number"))?;
        if !iterations_in_range(iterations) {
            return Err(bad(&format!(
                "the iteration count is outside {SCRAM_MIN_ITERATIONS}..={SCRAM_MAX_ITERATIONS}"
            )));
        }
        let salt = STANDARD.decode(salt).map_err(|_| bad("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(bad("the salt is empty"));
        }
        if salt.len() > SCRAM_MAX_SALT_LEN {
            return Err(bad(&format!("the salt is longer than {SCRAM_MAX_SALT_LEN} bytes")));
        }
        let key = |s: &str, what: &str| -> Result<[u8; 32]> {
            STANDARD
                .decode(s)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| bad(&format!("the {what} is not 32 bytes of base64")))
        };
        Ok(Self {
            iterations,
            salt,
            stored_key: key(stored, "stored key")?,
            server_key: key(server, "server key")?,
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
    /// The other side's message does not follow RFC 5802 as this side reads it (named part).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which this exchange does not offer.
    #[error("SCRAM channel binding is not supported here: connect with channel_binding=disable or prefer")]
    ChannelBinding,
    /// The client gave an authorization identity (`a=` in the GS2 header), to act as another
    /// user: not supported.
    #[error("SCRAM authorization identities (a=...) are not supported: log in as the user itself")]
    AuthorizationIdentity,
    /// The proof does not match: wrong password (or unknown user).
    #[error("password authentication failed")]
    WrongProof,
}

/// Messages longer than this are refused before they are parsed.
const MAX_SCRAM_MESSAGE: usize = 1024;

/// A nonce as RFC 5802 allows it: printable ASCII but ','; not empty.
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A saslname of RFC 5802: no NUL (no ',' either: the caller split on it), '=' only in the escapes
/// `=2C` and `=3D`. Empty is allowed (libpq sends `n=,`: PostgreSQL takes the user from the
/// startup message).
fn is_saslname(name: &str) -> bool {
    !name.contains('\0')
        && name
            .split('=')
            .skip(1)
            .all(|p| p.starts_with("2C") || p.starts_with("3D"))
}

/// Split a client-first message into its GS2 header (`n,,` or `y,,`) and the bare message.
fn split_gs2_header(msg: &str) -> std::result::Result<(&'static str, &str), ScramError> {
    for header in ["n,,", "y,,"] {
        if let Some(bare) = msg.strip_prefix(header) {
            return Ok((header, bare));
        }
    }
    if msg.starts_with("p=") {
        return Err(ScramError::ChannelBinding);
    }
    if let Some(authzid) = msg.strip_prefix("n,").or_else(|| msg.strip_prefix("y,"))
        && authzid.starts_with("a=")
    {
        return Err(ScramError::AuthorizationIdentity);
    }
    Err(ScramError::Malformed("the GS2 header is not n,, or y,,"))
}

/// The client nonce of a client-first-message-bare, which must be exactly `n=<user>,r=<nonce>`.
fn client_first_nonce(bare: &str) -> std::result::Result<&str, ScramError> {
    if bare.starts_with("m=") {
        return Err(ScramError::Malformed("mandatory extension"));
    }
    let rest = bare.strip_prefix("n=").ok_or(ScramError::Malformed(
        "client-first does not start with the user name (n=)",
    ))?;
    let (user, rest) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("client-first has no nonce"))?;
    if !is_saslname(user) {
        return Err(ScramError::Malformed("user name in client-first"));
    }
    if rest.starts_with("m=") {
        return Err(ScramError::Malformed("mandatory extension"));
    }
    let nonce = rest
        .strip_prefix("r=")
        .ok_or(ScramError::Malformed("client-first has no nonce"))?;
    if nonce.contains(',') {
        return Err(ScramError::Malformed(
            "client-first has attributes after the nonce (extensions are not supported)",
        ));
    }
    if !is_nonce(nonce) {
        return Err(ScramError::Malformed("client nonce"));
    }
    Ok(nonce)
}

/// The server side of one SCRAM-SHA-256 exchange (no channel binding): [`ScramServer::start`]
/// takes the client-first message and gives the server-first message; [`ScramServer::finish`]
/// checks the client-final message's proof and gives the server-final message.
///
/// Messages are read strictly, in the form libpq and other PostgreSQL clients send: client-first
/// `n,,n=<user>,r=<nonce>` (or `y,,`; no channel binding `p=`, no authorization identity `a=`, no
/// extensions), client-final `c=<base64 of the GS2 header>,r=<nonce>,p=<proof>`, each at most
/// 1024 bytes. Anything else is refused, never a panic.
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
    gs2_header: &'static str,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramServer(..)")
    }
}

impl ScramServer {
    /// Start an exchange against `verifier` (a [`ScramVerifier::mock`] for an unknown user) with a
    /// fresh server nonce.
    pub fn start(verifier: &ScramVerifier, client_first: &[u8]) -> std::result::Result<(Self, String), ScramError> {
        let mut n = [0u8; 18];
        random_bytes(&mut n).map_err(|_| ScramError::Malformed("no randomness for a nonce"))?;
        Self::start_with_nonce(verifier, client_first, &STANDARD.encode(n))
    }

    /// [`ScramServer::start`] with a given server nonce (printable, no comma, not empty): for
    /// tests against published vectors. Servers use [`ScramServer::start`].
    pub fn start_with_nonce(
        verifier: &ScramVerifier,
        client_first: &[u8],
        server_nonce: &str,
    ) -> std::result::Result<(Self, String), ScramError> {
        if client_first.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::Malformed("client-first message too long"));
        }
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let client_nonce = client_first_nonce(bare)?;
        if !is_nonce(server_nonce) {
            return Err(ScramError::Malformed("server nonce"));
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

    /// Check the client-final message, exactly `c=<binding>,r=<nonce>,p=<proof>`; on success the
    /// server-final message (`v=...`), which proves to the client that the server knew the
    /// verifier.
    pub fn finish(self, client_final: &[u8]) -> std::result::Result<String, ScramError> {
        if client_final.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::Malformed("client-final message too long"));
        }
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (binding, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("client-final has no nonce"))?;
        let binding = binding.strip_prefix("c=").ok_or(ScramError::Malformed(
            "client-final does not start with the channel binding (c=)",
        ))?;
        if binding != STANDARD.encode(self.gs2_header) {
            return Err(ScramError::Malformed("channel binding differs from the GS2 header"));
        }
        let (nonce, proof) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("client-final has no proof"))?;
        let nonce = nonce.strip_prefix("r=").ok_or(ScramError::Malformed(
            "client-final has no nonce (r=) after the channel binding",
        ))?;
        if !ct_eq(nonce.as_bytes(), self.nonce.as_bytes()) {
            return Err(ScramError::Malformed("nonce differs from the exchange's"));
        }
        let proof = proof.strip_prefix("p=").ok_or(ScramError::Malformed(
            "client-final has no proof (p=) after the nonce (extensions are not supported)",
        ))?;
        if proof.contains(',') {
            return Err(ScramError::Malformed("client-final has attributes after the proof"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::WrongProof);
        }
        let without_proof = format!("c={binding},r={nonce}");
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key = Zeroizing::new(proof.iter().zip(signature).map(|(p, s)| p ^ s).collect::<Vec<u8>>());
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
/// [`ScramClient::respond`] reads the server-first message strictly (`r=<nonce>,s=<salt>,i=<n>`)
/// and refuses a server that would make it do too much or too little work: an iteration count
/// outside [`SCRAM_MIN_ITERATIONS`]..=[`SCRAM_MAX_ITERATIONS`], a nonce that does not extend the
/// client's, an empty salt.
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
    password: Zeroizing<String>,
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
                password: Zeroizing::new(password.to_string()),
                client_first_bare: bare.clone(),
                client_nonce,
                server_signature: None,
            },
            format!("n,,{bare}"),
        ))
    }

    /// Answer the server-first message: the client-final message to send.
    pub fn respond(mut self, server_first: &str) -> std::result::Result<(Self, String), ScramError> {
        if server_first.len() > MAX_SCRAM_MESSAGE {
            return Err(ScramError::Malformed("server-first message too long"));
        }
        if server_first.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension"));
        }
        let mut attrs = server_first.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("server-first does not start with the nonce (r=)"))?;
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or(ScramError::Malformed("server-first has no salt (s=) after the nonce"))?;
        let iterations = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or(ScramError::Malformed(
                "server-first has no iteration count (i=) after the salt",
            ))?;
        if attrs.next().is_some() {
            return Err(ScramError::Malformed(
                "server-first has attributes after the iteration count",
            ));
        }
        if !is_nonce(nonce) || nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::Malformed("server nonce does not extend the client's"));
        }
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ScramError::Malformed("server salt is empty or not base64"))?;
        let iterations = parse_decimal(iterations)
            .filter(|i| iterations_in_range(*i))
            .ok_or(ScramError::Malformed(
                "server iteration count is not a number in 4096..=1000000",
            ))?;
        let salted = Zeroizing::new(pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
            normalize(&self.password).as_bytes(),
            &salt,
            iterations,
        ));
        let client_key = Zeroizing::new(hmac_sha256(&salted[..], b"Client Key"));
        let server_key = Zeroizing::new(hmac_sha256(&salted[..], b"Server Key"));
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&sha256(&client_key[..]), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        self.server_signature = Some(hmac_sha256(&server_key[..], auth.as_bytes()));
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

    /// A client proof over any client-final-without-proof, to try what a server accepts.
    fn proof_over(
        password: &str,
        salt: &[u8],
        iters: u32,
        first_bare: &str,
        server_first: &str,
        without_proof: &str,
    ) -> String {
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iters);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let sig = hmac_sha256(&sha256(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        STANDARD.encode(proof)
    }

    #[test]
    fn passwords_that_saslprep_empties_are_refused_without_being_quoted() {
        // U+00AD soft hyphen, U+FEFF, U+180B, U+2060, U+034F, U+200D: SASLprep maps them to nothing
        for password in ["\u{ad}", "\u{ad}\u{feff}\u{180b}\u{2060}", "\u{34f}\u{200d}"] {
            for e in [
                ScramVerifier::new(password).unwrap_err(),
                hash_password(password).unwrap_err(),
            ] {
                let e = e.to_string();
                assert!(e.contains("empty") && e.contains("SASLprep"), "{e}");
                assert!(!e.contains(password), "{e}");
            }
        }
        // one character left is enough; U+200B (zero-width space) is a non-ASCII space to SASLprep,
        // mapped to U+0020 before the mapping to nothing (as PostgreSQL does): not empty
        assert!(ScramVerifier::new("\u{ad}x").is_ok());
        assert!(hash_password("\u{2060}x").is_ok());
        let v = ScramVerifier::new("\u{200b}").unwrap();
        assert_eq!(ScramVerifier::derive(" ", &v.salt, v.iterations), v);
    }

    #[test]
    fn argon2_and_scram_agree_on_the_saslprep_form_of_a_password() {
        // "I\u{ad}X" and "IX" are one password to SASLprep (so to SCRAM): argon2 agrees
        let v = ScramVerifier::new("I\u{ad}X").unwrap();
        assert_eq!(ScramVerifier::derive("IX", &v.salt, v.iterations), v);
        let h = hash_password("I\u{ad}X").unwrap();
        assert!(verify_password(&h, "IX"));
        assert!(verify_password(&h, "I\u{ad}X"));
        // non-ASCII spaces map to a space, compatibility forms are folded (NFKC)
        let h = hash_password("a\u{a0}b\u{2168}").unwrap();
        assert!(verify_password(&h, "a bIX"));
        assert!(!verify_password(&h, "a b"));
        // a password SASLprep refuses (a control character) is used as it is, by both
        let raw = "ab\u{7}c";
        assert_eq!(&*normalize(raw), raw);
        let h = hash_password(raw).unwrap();
        assert!(verify_password(&h, raw) && !verify_password(&h, "abc"));
        let v = ScramVerifier::new(raw).unwrap();
        let (server, first) = ScramServer::start(&v, b"n,,n=,r=abcdef").unwrap();
        let fin = client_final(raw, &v.salt, v.iterations, "n=,r=abcdef", &first);
        assert!(server.finish(fin.as_bytes()).is_ok());
        // a password made only of removed characters is used raw, as PostgreSQL does (its
        // SASLprep refuses an empty result): a libpq client's proof is over those bytes
        assert_eq!(&*normalize("\u{ad}"), "\u{ad}");
        let v = ScramVerifier::from_prepared("\u{ad}".as_bytes(), b"0123456789abcdef", 4096);
        assert_eq!(ScramVerifier::derive("\u{ad}", b"0123456789abcdef", 4096), v);
        assert_ne!(ScramVerifier::derive("", b"0123456789abcdef", 4096), v);
        let (client, first) = ScramClient::start("ana", "\u{ad}").unwrap();
        let (server, server_first) = ScramServer::start(&v, first.as_bytes()).unwrap();
        let (client, fin) = client.respond(&server_first).unwrap();
        assert!(client.verify(&server.finish(fin.as_bytes()).unwrap()));
        // ... and never verifies: no hash is made of it
        let h = hash_password("x").unwrap();
        assert!(!verify_password(&h, "\u{ad}") && !verify_password(&h, ""));
    }

    fn argon2_hash(algorithm: argon2::Algorithm, m: u32, t: u32, p: u32, password: &str) -> String {
        let params = argon2::Params::new(m, t, p, None).unwrap();
        Argon2::new(algorithm, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string()
    }

    #[test]
    fn password_hashes_outside_the_accepted_parameters_never_verify() {
        use argon2::Algorithm::{Argon2d, Argon2i, Argon2id};
        // cheap hashes that match their password, but are not what hash_password makes
        for (phc, what) in [
            (argon2_hash(Argon2i, 64, 1, 1, "pw"), "argon2i"),
            (argon2_hash(Argon2d, 64, 1, 1, "pw"), "argon2d"),
            (argon2_hash(Argon2id, 64, 11, 1, "pw"), "t = 11"),
            (argon2_hash(Argon2id, 64, 1, 5, "pw"), "p = 5"),
        ] {
            assert!(!verify_password(&phc, "pw"), "{what}: {phc}");
        }
        // within the bounds: verifies
        let edge = argon2_hash(Argon2id, 64, 10, 4, "pw");
        assert!(verify_password(&edge, "pw"));
        assert!(check_password_hash(&edge).is_ok());
        let h = hash_password("pw").unwrap();
        assert!(check_password_hash(&h).is_ok(), "what hash_password makes is accepted");
        assert!(check_password_hash(&h.replace("m=19456", "m=65536")).is_ok());
        // the same checks for callers validating catalog entries, naming what is wrong
        let salt_and_hash = h.rsplitn(3, '$').take(2).collect::<Vec<_>>();
        let (hash_b64, salt_b64) = (salt_and_hash[0], salt_and_hash[1]);
        for (phc, what) in [
            (argon2_hash(Argon2i, 64, 1, 1, "pw"), "argon2id"),
            (argon2_hash(Argon2id, 64, 11, 1, "pw"), "time cost"),
            (argon2_hash(Argon2id, 64, 1, 5, "pw"), "parallelism"),
            (h.replace("m=19456", "m=65537"), "memory cost"),
            (h.replace("m=19456", "m=4294967295"), "memory cost"),
            (h.replace("t=2", "t=4294967295"), "time cost"),
            (h.replace("t=2", "t=0"), "invalid"),
            (h.replace("m=19456", "m=0"), "invalid"),
            (h.replace("p=1", "p=0"), "invalid"),
            (h.replace("v=19", "v=16"), "version"),
            (h.replace(",p=1", ""), "exactly m, t and p"),
            (h.replace("p=1", "p=1,keyid=AAAA"), "exactly m, t and p"),
            (h.replace("t=2", "t=+2"), "exactly m, t and p"),
            (
                format!("$argon2id$v=19$m=19456,t=2,p=1${salt_b64}"),
                "no salt or no hash",
            ),
            (
                format!(
                    "$argon2id$v=19$m=19456,t=2,p=1${salt_b64}${hash_b64}{}",
                    "A".repeat(300)
                ),
                "longer",
            ),
            (
                "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_string(),
                "argon2id",
            ),
            (String::new(), "PHC"),
            ("$".to_string(), "PHC"),
            ("$argon2id".to_string(), "no salt or no hash"),
            ("not a hash".to_string(), "PHC"),
        ] {
            let e = check_password_hash(&phc).unwrap_err().to_string();
            assert!(
                e.contains("not an accepted argon2id password hash") && e.contains(what),
                "{phc}: {e}"
            );
            assert!(!e.contains(hash_b64) && !e.contains(salt_b64), "{e}");
            assert!(!verify_password(&phc, "pw"), "{phc}");
        }
        // a tampered memory cost is refused before any work (1 GiB, 4 TiB would be tried otherwise)
        let h = hash_password("pw").unwrap();
        for m in ["m=65537", "m=1048576", "m=4294967295"] {
            let tampered = h.replace("m=19456", m);
            let t = std::time::Instant::now();
            assert!(!verify_password(&tampered, "pw"), "{m}");
            assert!(t.elapsed() < std::time::Duration::from_secs(1), "{m}");
        }
    }

    #[test]
    fn stored_verifiers_outside_the_accepted_bounds_are_refused() {
        let key = STANDARD.encode([7u8; 32]);
        let verifier =
            |iterations: &str, salt: &str, stored: &str| format!("SCRAM-SHA-256${iterations}:{salt}${stored}:{key}");
        let salt16 = STANDARD.encode([1u8; 16]);
        for (text, what) in [
            (verifier("4095", &salt16, &key), "iteration count"),
            (verifier("1000001", &salt16, &key), "iteration count"),
            (verifier("4294967295", &salt16, &key), "iteration count"),
            (verifier("4294967296", &salt16, &key), "iteration count"),
            (verifier("+4096", &salt16, &key), "iteration count"),
            (verifier("-4096", &salt16, &key), "iteration count"),
            (verifier(" 4096", &salt16, &key), "iteration count"),
            (verifier("4096", "", &key), "salt"),
            (verifier("4096", "!!!!", &key), "salt"),
            (verifier("4096", "c2FsdA", &key), "salt"),
            (verifier("4096", &STANDARD.encode([1u8; 65]), &key), "salt"),
            (verifier("4096", &salt16, &STANDARD.encode([7u8; 31])), "stored key"),
            (verifier("4096", &salt16, &STANDARD.encode([7u8; 33])), "stored key"),
            (verifier("4096", &salt16, ""), "stored key"),
            (format!("{}$x", verifier("4096", &salt16, &key)), "server key"),
            (format!("{}:x", verifier("4096", &salt16, &key)), "server key"),
        ] {
            let e = ScramVerifier::parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("not a SCRAM-SHA-256 verifier") && e.contains(what),
                "{text}: {e}"
            );
            assert!(!e.contains(&key), "{e}");
        }
        for (iterations, salt_len) in [("4096", 1), ("1000000", 64), ("600000", 16)] {
            let text = verifier(iterations, &STANDARD.encode(vec![1u8; salt_len]), &key);
            assert_eq!(ScramVerifier::parse(&text).unwrap().to_string(), text);
        }
        let m = ScramVerifier::mock(b"secret", "nobody");
        assert_eq!(ScramVerifier::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn client_first_messages_are_parsed_strictly() {
        let v = ScramVerifier::new("pw").unwrap();
        let long = format!("n,,n=a,r={}", "x".repeat(1100));
        let long_name = format!("n,,n={},r=abc", "u".repeat(1100));
        let hostile: Vec<&[u8]> = vec![
            b"",
            b",",
            b",,",
            b",,,,,,",
            b"n",
            b"n,",
            b"n,,",
            b"n,,,",
            b"N,,n=a,r=abc",
            b" n,,n=a,r=abc",
            b"x,,n=a,r=abc",
            b"p,,n=a,r=abc",
            b"n,x,n=a,r=abc",
            b"n,,,n=a,r=abc",
            b"n,,n=",
            b"n,,n=a",
            b"n,,n=a,",
            b"n,,n=a,r",
            b"n,,n=a,r=",
            b"n,,n=a,r=abc,",
            b"n,,r=abc",
            b"n,,r=abc,n=a",
            b"n,,a,r=abc",
            b"n,,n=a,n=b,r=abc",
            b"n,,n=a,r=abc,r=def",
            b"n,,n=a,r=abc,n=a",
            b"n,,m=ext,n=a,r=abc",
            b"n,,n=a,m=ext,r=abc",
            b"n,,n=a,r=abc,m=ext",
            b"n,,n=a,r=abc,x=ext",
            b"n,,n=a,x=y,r=abc",
            b"n,,n=a,r=ab c",
            b"n,,n=a,r=ab\x01c",
            b"n,,n=a,r=ab\x7fc",
            b"n,,n=a,r=ab\xc3\xa9",
            b"n,,n=a,r=abc\xff",
            b"\xff\xfe",
            b"n,,n=a\x00b,r=abc",
            b"n,,n=a=,r=abc",
            b"n,,n=a=2,r=abc",
            b"n,,n=a=41,r=abc",
            long.as_bytes(),
            long_name.as_bytes(),
        ];
        for m in hostile {
            assert!(ScramServer::start(&v, m).is_err(), "{:?}", String::from_utf8_lossy(m));
        }
        let start = |m: &[u8]| ScramServer::start(&v, m).map(|_| ()).unwrap_err();
        for m in [&b"n,a=bob,n=a,r=abc"[..], b"y,a=bob,n=a,r=abc", b"n,a=,n=a,r=abc"] {
            assert_eq!(start(m), ScramError::AuthorizationIdentity);
        }
        for m in [
            &b"p=tls-server-end-point,,n=a,r=abc"[..],
            b"p=tls-unique,a=bob,n=a,r=abc",
            b"p=",
        ] {
            assert_eq!(start(m), ScramError::ChannelBinding);
        }
        assert_eq!(
            start(b"n,,n=a,r=abc,m=x"),
            ScramError::Malformed("client-first has attributes after the nonce (extensions are not supported)")
        );
        assert_eq!(
            start(long.as_bytes()),
            ScramError::Malformed("client-first message too long")
        );
        assert!(!ScramError::AuthorizationIdentity.to_string().contains("bob"));
        // fine: what libpq sends (no user name), "y" (the client could bind, we cannot), escapes
        for m in [
            &b"n,,n=,r=abc"[..],
            b"y,,n=a,r=abc",
            b"n,,n=a=2Cb=3D,r=abc",
            b"n,,n=\xc3\xa9,r=abc",
        ] {
            assert!(ScramServer::start(&v, m).is_ok(), "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn client_final_messages_are_parsed_strictly() {
        let v = ScramVerifier::derive("pw", b"0123456789abcdef", 4096);
        let bare = "n=a,r=abc";
        let sf = format!("r=abcSRV,s={},i=4096", STANDARD.encode(b"0123456789abcdef"));
        let server = || {
            ScramServer::start_with_nonce(&v, format!("n,,{bare}").as_bytes(), "SRV")
                .unwrap()
                .0
        };
        let proof = |without_proof: &str| proof_over("pw", b"0123456789abcdef", 4096, bare, &sf, without_proof);
        let good = proof("c=biws,r=abcSRV");
        assert!(server().finish(format!("c=biws,r=abcSRV,p={good}").as_bytes()).is_ok());
        let long = format!("c=biws,r=abcSRV,p={good}{}", "A".repeat(2000));
        let hostile: Vec<String> = vec![
            String::new(),
            ",".into(),
            ",,".into(),
            ",,,".into(),
            "c=biws".into(),
            "c=biws,r=abcSRV".into(),
            "c=biws,r=abcSRV,".into(),
            "c=biws,r=abcSRV,p=".into(),
            "c=biws,r=abcSRV,p=!!!!".into(),
            format!("c=biws,r=abcSRV,p={good},"),
            format!("c=biws,r=abcSRV,p={good} "),
            format!("r=abcSRV,c=biws,p={good}"),
            format!("c=biws,p={good},r=abcSRV"),
            format!("c=biws,p={good}"),
            format!("r=abcSRV,p={good}"),
            format!("c=,r=abcSRV,p={good}"),
            format!("c=eSws,r=abcSRV,p={good}"),
            format!("c=biws=,r=abcSRV,p={good}"),
            format!("c=cCx4LA==,r=abcSRV,p={good}"),
            format!("c=biws,r=abc,p={good}"),
            format!("c=biws,r=abcSRVX,p={good}"),
            format!("c=biws,r=,p={good}"),
            format!("c=biws,c=biws,r=abcSRV,p={good}"),
            format!("c=biws,r=abcSRV,r=abcSRV,p={good}"),
            format!("c=biws,r=abcSRV,p={good},p={good}"),
            format!("c=biws,r=abcSRV,x=y,p={good}"),
            format!("c=biws,r=abcSRV,m=y,p={good}"),
            format!("c=biws,r=abcSRV,p={good},x=y"),
            long,
        ];
        for m in &hostile {
            assert!(server().finish(m.as_bytes()).is_err(), "{m}");
        }
        assert!(server().finish(b"c=biws,r=abcSRV,p=\xff").is_err());
        // proofs made over the extra attributes (which the old parser signed along) do not pass
        for without_proof in [
            "c=biws,r=abcSRV,x=y",
            "c=biws,r=abcSRV,p=AAAA",
            "c=biws,r=abcSRV,r=abcSRV",
        ] {
            let m = format!("{without_proof},p={}", proof(without_proof));
            assert!(server().finish(m.as_bytes()).is_err(), "{m}");
        }
    }

    #[test]
    fn a_client_refuses_a_server_first_that_would_make_it_do_too_much_or_too_little_work() {
        let salt = STANDARD.encode(b"0123456789abcdef");
        let client = || ScramClient::start("ana", "pencil").unwrap().0;
        let respond = |server_first: &dyn Fn(&str) -> String| {
            let c = client();
            let sf = server_first(&c.client_nonce);
            c.respond(&sf).map(|_| ())
        };
        for (what, server_first) in [
            (
                "i=1",
                &(|n: &str| format!("r={n}SRV,s={salt},i=1")) as &dyn Fn(&str) -> String,
            ),
            ("i=4095", &|n: &str| format!("r={n}SRV,s={salt},i=4095")),
            ("i=1000001", &|n: &str| format!("r={n}SRV,s={salt},i=1000001")),
            ("i=u32::MAX", &|n: &str| format!("r={n}SRV,s={salt},i=4294967295")),
            ("i=0", &|n: &str| format!("r={n}SRV,s={salt},i=0")),
            ("i=+4096", &|n: &str| format!("r={n}SRV,s={salt},i=+4096")),
            ("no i", &|n: &str| format!("r={n}SRV,s={salt}")),
            ("nonce = client nonce", &|n: &str| format!("r={n},s={salt},i=4096")),
            ("other nonce", &|_: &str| format!("r=abcdefSRV,s={salt},i=4096")),
            ("nonce with a space", &|n: &str| format!("r={n}S V,s={salt},i=4096")),
            ("empty salt", &|n: &str| format!("r={n}SRV,s=,i=4096")),
            ("salt not base64", &|n: &str| format!("r={n}SRV,s=!!!!,i=4096")),
            ("no salt", &|n: &str| format!("r={n}SRV,i=4096")),
            ("out of order", &|n: &str| format!("s={salt},r={n}SRV,i=4096")),
            ("mandatory extension", &|n: &str| {
                format!("m=x,r={n}SRV,s={salt},i=4096")
            }),
            ("twice", &|n: &str| format!("r={n}SRV,r={n}SRV,s={salt},i=4096")),
            ("empty", &|_: &str| String::new()),
            ("long", &|n: &str| format!("r={n}{},s={salt},i=4096", "x".repeat(2000))),
        ] {
            assert!(respond(server_first).is_err(), "{what}");
        }
        assert!(respond(&|n: &str| format!("r={n}SRV,s={salt},i=4096")).is_ok());
    }
}
