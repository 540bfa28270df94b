//! Cloud object stores (S3 and S3-compatible servers, Google Cloud Storage, Azure Blob): where
//! their settings and credentials come from, and errors that say so in one line.
//!
//! Credentials are looked up in the order the vendors' own tools use, and an instance-metadata
//! service is only asked when this machine is an instance of that cloud or the user named the
//! endpoint: elsewhere the metadata address does not answer (or a proxy refuses it), and
//! object_store's fallback to it turned "nothing is configured" into a 403 or a long timeout.
//!
//! S3 (`s3://bucket/prefix`), first match wins:
//! 1. store options `access_key_id` / `secret_access_key` (`session_token`);
//! 2. the profile named by the store option `profile` (`aws --profile`): it wins over every
//!    credential of the environment;
//! 3. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`);
//! 4. a profile (as in 6.) that needs what this reader does not follow (`role_arn`,
//!    `source_profile`, `credential_process`, `credential_source`, `web_identity_token_file`,
//!    `sso_*`) is an error naming the profile and those keys, whatever comes after it here:
//!    falling back to other credentials would act as someone else;
//! 5. web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) or container credentials
//!    (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, `..._FULL_URI` + `..._AUTHORIZATION_TOKEN_FILE`);
//! 6. the profile (option `profile`, else `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else
//!    `default`) in the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//!    `~/.aws/credentials`), then in the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`,
//!    section `[profile NAME]`); `~/` in those variables is the home folder;
//! 7. instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`, and only when the
//!    machine says it is an EC2 instance (`/sys/class/dmi/id/*_vendor`, `/sys/hypervisor/uuid`)
//!    or a metadata endpoint is given (`metadata_endpoint`, `AWS_METADATA_ENDPOINT`,
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT`);
//! 8. otherwise: "no S3 credentials found (looked in: ...)", before any request is sent.
//!
//! A session token is only used with the keys of its own source. `region` and `endpoint_url`
//! of the profile fill what the options and the environment do not give; the profile files are
//! only read when something is needed from them, and when the credentials came from elsewhere
//! an unreadable file is skipped (with a warning). A region must be a region name
//! (`[a-z0-9-]+`): it becomes part of the endpoint's host name.
//!
//! Plain HTTP: an `http://` endpoint on this machine (127.0.0.0/8, `::1`, `localhost`) allows
//! it by itself; any other host needs an explicit `allow_http=true` (or `AWS_ALLOW_HTTP`,
//! `GOOGLE_ALLOW_HTTP`, `AZURE_ALLOW_HTTP`), and an explicit `allow_http=false` always wins.
//! (The Azure emulator is the exception: object_store always speaks HTTP to it, with the
//! emulator's published key.)
//!
//! Secret values never appear in errors, logs or `Debug` output: only names and paths do.
//! Bucket and container names are checked, so that credentials pasted into a URL
//! (`s3://KEY:SECRET@bucket`) are refused without being repeated; endpoints holding a user
//! name, password or query are refused, and every URL shown goes through [`redact_url`].
//! Options read from a file in the store itself (a lake's `stratalake.toml`) pass
//! [`check_untrusted_options`] first: whoever can write that file must not choose where
//! requests and credentials go.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{BackoffConfig, ClientConfigKey, CredentialProvider, ObjectStore, RetryConfig};

/// What a cloud store's requests go to, for errors that name it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// "bucket" or "container".
    pub kind: &'static str,
    pub name: String,
    /// Passed through [`redact_url`].
    pub endpoint: String,
}

impl Remote {
    /// A one-line reason for `e` when it means the bucket does not exist or no credentials were
    /// found; `None` for any other error.
    pub fn explain(&self, e: &object_store::Error) -> Option<String> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(m) = c.downcast_ref::<MissingCredentials>() {
                return Some(m.0.clone());
            }
            let text = c.to_string();
            // S3 and GCS (XML API) say NoSuchBucket, Azure ContainerNotFound, in the error body
            // that object_store carries in its message.
            if ["<Code>NoSuchBucket</Code>", "<Code>ContainerNotFound</Code>"]
                .iter()
                .any(|code| text.contains(code))
            {
                return Some(format!(
                    "{} {:?} does not exist at {} (create it, or check the endpoint and region)",
                    self.kind, self.name, self.endpoint
                ));
            }
            cur = c.source();
        }
        None
    }
}

/// The process environment as the resolution below sees it (tests give their own).
pub(crate) struct Env {
    vars: HashMap<String, String>,
    /// Where `/sys` is: the machine's DMI data tells whether it is a cloud instance.
    sys: PathBuf,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // values may be secrets: names only
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env")
            .field("names", &names)
            .field("sys", &self.sys)
            .finish()
    }
}

impl Env {
    /// This process's environment.
    pub fn process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            sys: PathBuf::from("/sys"),
        }
    }

    #[cfg(test)]
    pub fn new(vars: &[(&str, &str)], sys: &FsPath) -> Self {
        Self {
            vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            sys: sys.to_path_buf(),
        }
    }

    /// A variable's value; an empty one counts as unset.
    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn truthy(&self, name: &str) -> bool {
        self.get(name).is_some_and(truthy)
    }

    fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }

    /// `(name, value)` of every variable starting with `prefix`.
    fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first line of a file below `/sys`, lower-cased ("" when absent or unreadable).
    fn sys_file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.sys.join(rel))
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    fn is_ec2(&self) -> bool {
        [
            "class/dmi/id/sys_vendor",
            "class/dmi/id/board_vendor",
            "class/dmi/id/bios_vendor",
        ]
        .iter()
        .any(|f| self.sys_file(f).starts_with("amazon"))
            || self.sys_file("class/dmi/id/bios_version").contains("amazon")
            || self.sys_file("hypervisor/uuid").starts_with("ec2")
    }

    fn is_gce(&self) -> bool {
        self.sys_file("class/dmi/id/product_name")
            .contains("google compute engine")
            || self.sys_file("class/dmi/id/bios_vendor") == "google"
    }

    fn is_azure_vm(&self) -> bool {
        // Azure's documented chassis asset tag of its virtual machines
        self.sys_file("class/dmi/id/chassis_asset_tag") == "7783-7084-3265-9085-8269-3286-77"
    }
}

/// A boolean as object_store reads it: `None` when it is neither.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" | "y" => Some(true),
        "0" | "false" | "off" | "no" | "n" => Some(false),
        _ => None,
    }
}

fn truthy(v: &str) -> bool {
    parse_bool(v) == Some(true)
}

/// The error a credential provider gives when nothing supplied credentials: found again by
/// [`Remote::explain`] in whatever error chain it ends up in.
#[derive(Debug)]
struct MissingCredentials(String);

impl fmt::Display for MissingCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MissingCredentials {}

/// A credential provider that never has any: each request fails at once with the list of the
/// places that were searched, instead of asking an instance-metadata service.
struct NoCredentials<T> {
    store: &'static str,
    message: String,
    _credential: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for NoCredentials<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoCredentials").field("store", &self.store).finish()
    }
}

impl<T> NoCredentials<T> {
    fn provider(store: &'static str, message: String) -> Arc<Self> {
        Arc::new(Self {
            store,
            message,
            _credential: PhantomData,
        })
    }
}

#[async_trait::async_trait]
impl<T: Send + Sync + 'static> CredentialProvider for NoCredentials<T> {
    type Credential = T;

    async fn get_credential(&self) -> object_store::Result<Arc<T>> {
        Err(object_store::Error::Generic {
            store: self.store,
            source: Box::new(MissingCredentials(self.message.clone())),
        })
    }
}

/// A cloud store as [`open`] made it (no `Debug`: object_store's stores print their settings).
pub(crate) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// The path inside the bucket or container (as written in the URL).
    pub prefix: String,
    pub remote: Remote,
}

const CLOUD_SCHEMES: [&str; 5] = ["s3", "gs", "az", "abfs", "abfss"];

/// Open `url` when it names a cloud store (`s3://`, `gs://`, `az://`, `abfs://`, `abfss://`);
/// `None` for any other URL. Errors hold no secret of `url`, `options` or `env`.
pub(crate) fn open(url: &str, options: &BTreeMap<String, String>, env: &Env) -> Result<Option<Opened>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(None);
    };
    if !CLOUD_SCHEMES.contains(&scheme) {
        return Ok(None);
    }
    if rest.contains(['?', '#']) {
        return Err(
            "the URL has a query string or fragment ('?' or '#'), which store URLs do not take \
                    (credentials belong in the environment or the config, never in the URL)"
                .into(),
        );
    }
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.to_string();
    // object_store's build errors may quote a setting: never a secret one
    let secrets = Secrets::of(options, env);
    let (store, remote) = match scheme {
        "s3" => s3(authority, options, env).and_then(build),
        "gs" => gcs(authority, options, env).and_then(build),
        _ => azure(scheme, authority, options, env).and_then(build),
    }
    .map_err(|e| secrets.scrub(&e))?;
    Ok(Some(Opened { store, prefix, remote }))
}

/// The store `b` and `remote` make.
fn build<B: CloudBuilder>((b, remote): (B, Remote)) -> Result<(Arc<dyn ObjectStore>, Remote), String> {
    Ok((b.build_store().map_err(|e| e.to_string())?, remote))
}

/// Values of secret settings (keys, tokens, passwords), to be blotted out of error texts that
/// are not ours.
struct Secrets(Vec<String>);

impl Secrets {
    fn of(options: &BTreeMap<String, String>, env: &Env) -> Self {
        let secret = |name: &str| {
            let n = name.to_ascii_lowercase();
            ["secret", "token", "key", "password", "sas", "signature"]
                .iter()
                .any(|s| n.contains(s))
                && !["_file", "_path", "_uri", "_url", "endpoint", "_id"]
                    .iter()
                    .any(|s| n.ends_with(s))
        };
        let mut values: Vec<String> = options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .filter(|(k, v)| secret(k) && v.len() >= 4)
            .map(|(_, v)| v.to_string())
            .collect();
        // the longest first, so that a secret holding another is blotted out whole
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self(values)
    }

    fn scrub(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), "<secret>"))
    }
}

/// Naming rules of buckets and containers.
#[derive(Clone, Copy)]
enum NameRules {
    S3,
    Gcs,
    AzureContainer,
}

impl NameRules {
    fn kind(self) -> &'static str {
        match self {
            Self::S3 | Self::Gcs => "bucket",
            Self::AzureContainer => "container",
        }
    }

    /// Whether `name` is a valid name. The error never repeats it: a name that breaks the rules
    /// may be credentials pasted into the URL (`s3://KEY:SECRET@bucket`).
    fn check(self, name: &str) -> Result<(), String> {
        let kind = self.kind();
        if name.is_empty() {
            return Err(format!("no {kind} name"));
        }
        // Azure's special containers
        if matches!(self, Self::AzureContainer) && ["$root", "$web", "$logs"].contains(&name) {
            return Ok(());
        }
        let allowed = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || (c == '.' && !matches!(self, Self::AzureContainer))
                || (c == '_' && matches!(self, Self::Gcs))
        };
        if !name.chars().all(allowed) {
            return Err(format!(
                "the {kind} name in the URL contains characters not allowed in {kind} names (credentials \
                 belong in the environment or the config, never in the URL)"
            ));
        }
        // GCS: up to 222 with dots, up to 63 between them
        let max = if matches!(self, Self::Gcs) { 222 } else { 63 };
        if !(3..=max).contains(&name.len()) || name.split('.').any(|part| part.len() > 63) {
            return Err(format!("the {kind} name in the URL must be 3 to {max} characters long"));
        }
        Ok(())
    }
}

/// An Azure URL's authority: the container, and the account's host when written as
/// `container@account.dfs.core.windows.net`.
fn azure_authority(authority: &str) -> Result<(&str, Option<&str>), String> {
    let (container, host) = match authority.split_once('@') {
        Some((c, host)) => (c, Some(host)),
        None => (authority, None),
    };
    NameRules::AzureContainer.check(container)?;
    if let Some(host) = host
        && (host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    {
        return Err(
            "the account host in the URL contains characters not allowed in host names (credentials belong \
             in the environment or the config, never in the URL)"
                .into(),
        );
    }
    Ok((container, host))
}

/// Whether the authority of a cloud store URL is a valid bucket (or container and account).
fn check_store_authority(scheme: &str, authority: &str) -> Result<(), String> {
    match scheme {
        "s3" => NameRules::S3.check(authority),
        "gs" => NameRules::Gcs.check(authority),
        _ => azure_authority(authority).map(|_| ()),
    }
}

/// `url` as it may be shown in errors and logs: without user name, password, query string or
/// fragment. A cloud store URL whose bucket or container is not a valid name is shown without
/// it, and without its path (what is there may be credentials pasted into the URL, with a `/`
/// in the secret). A plain path is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, _)) = url.split_once("://") else {
        return url.to_string();
    };
    let base = url.split(['?', '#']).next().unwrap_or_default();
    let rest = &base[scheme.len() + 3..];
    if CLOUD_SCHEMES.contains(&scheme) {
        let authority = rest.split('/').next().unwrap_or_default();
        return match check_store_authority(scheme, authority) {
            Ok(()) => base.to_string(),
            Err(_) => format!("{scheme}://(name withheld)"),
        };
    }
    // the user information ends at the last '@': a password pasted in unencoded may hold '/'
    match rest.rfind('@') {
        Some(i) => format!("{scheme}://{}", &rest[i + 1..]),
        None => base.to_string(),
    }
}

/// Refuse an endpoint (what `what` names) that holds a user name, password, query string or
/// fragment: they would travel into request URLs and errors. Nothing of it is repeated.
fn check_endpoint(what: &str, endpoint: &str) -> Result<(), String> {
    let clean = match url::Url::parse(endpoint) {
        Ok(u) => u.username().is_empty() && u.password().is_none() && u.query().is_none() && u.fragment().is_none(),
        Err(_) => !endpoint.contains(['@', '?', '#']),
    };
    if clean {
        Ok(())
    } else {
        Err(format!(
            "the {what} must not hold a user name, password, query string or fragment (credentials belong in \
             the environment or the config)"
        ))
    }
}

/// Whether `endpoint`'s host is this machine: 127.0.0.0/8, `::1` or `localhost`.
fn is_loopback(endpoint: &str) -> bool {
    match url::Url::parse(endpoint).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost") || d.eq_ignore_ascii_case("localhost."),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn is_http(endpoint: &str) -> bool {
    endpoint.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// Whether plain HTTP is to be turned on for `endpoint`, given `allow_http` as the options or
/// the environment set it (`None`: not set); `env_var` is that store's variable for it.
/// Tokens and signatures travel in clear over HTTP: only this machine gets it unasked.
fn plain_http(endpoint: &str, allow_http: Option<&str>, env_var: &str) -> Result<bool, String> {
    if !is_http(endpoint) {
        return Ok(false);
    }
    match allow_http.map(parse_bool) {
        Some(Some(true)) => Ok(true),
        Some(Some(false)) => Err(format!(
            "the endpoint {} uses http:// but allow_http is false: use https://, or set allow_http=true",
            redact_url(endpoint)
        )),
        // not a boolean: object_store's build says so
        Some(None) => Ok(false),
        None if is_loopback(endpoint) => Ok(true),
        None => Err(format!(
            "the endpoint {} uses plain HTTP, which sends credentials and data unencrypted: use https://, or \
             set the option allow_http=true (or {env_var}=true) if the network to it is trusted",
            redact_url(endpoint)
        )),
    }
}

/// A region is part of the endpoint's host name (`s3.REGION.amazonaws.com`): only a region
/// name is accepted. The error does not repeat it.
fn check_region(region: &str) -> Result<(), String> {
    if !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Ok(())
    } else {
        Err("the region is not a region name (only a-z, 0-9 and '-', as in eu-west-1)".into())
    }
}

/// Whether a config stored in the store itself ([`check_untrusted_options`]) may set option
/// `key` of a store of `scheme`: `Some(true)` for a region (whose value must then be a region
/// name), `Some(false)` for another harmless option, `None` for anything else.
fn harmless_option(scheme: &str, key: &str) -> Option<bool> {
    use AmazonS3ConfigKey as S3;
    use AzureConfigKey as Az;
    match scheme {
        "s3" => match key.parse().ok()? {
            S3::Region | S3::DefaultRegion => Some(true),
            S3::VirtualHostedStyleRequest | S3::Checksum | S3::SkipSignature | S3::DisableTagging => Some(false),
            _ => None,
        },
        "gs" => matches!(key.parse().ok()?, GoogleConfigKey::SkipSignature).then_some(false),
        "az" | "abfs" | "abfss" => matches!(key.parse().ok()?, Az::SkipSignature | Az::DisableTagging).then_some(false),
        _ => None,
    }
}

/// What [`harmless_option`] accepts, for messages.
fn harmless_options(scheme: &str) -> &'static str {
    match scheme {
        "s3" => "region, virtual_hosted_style_request, checksum_algorithm, skip_signature, disable_tagging",
        "gs" => "skip_signature",
        "az" | "abfs" | "abfss" => "skip_signature, disable_tagging",
        _ => "no option",
    }
}

/// Check store options that were read from a file in a store (a lake's `stratalake.toml` read
/// from its bucket) rather than given by the user, for the store at `url`.
///
/// Whoever can write that file must not choose where requests go or where credentials come
/// from: an `endpoint`, `metadata_endpoint`, `proxy_url`, `profile`, `allow_http` (or
/// `allow_invalid_certificates`), credential keys, container-credential URLs and token files
/// (which would send a local file to any host), an `account_name`, a `bucket`, or a `region`
/// that is not a region name. Only a short list of harmless options is accepted: S3 `region`
/// (a region name), `virtual_hosted_style_request`, `checksum_algorithm`, `skip_signature`,
/// `disable_tagging`; GCS `skip_signature`; Azure `skip_signature`, `disable_tagging`; none for
/// other stores. Any other option is an [`Error::StoreConfig`](crate::Error::StoreConfig)
/// naming it (never its value): such settings must come from the environment or the local
/// config. The URL itself is checked when the store is opened.
///
/// ```
/// # use std::collections::BTreeMap;
/// use stratalake_table::store::check_untrusted_options;
///
/// let mut options = BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]);
/// check_untrusted_options("s3://bucket/lake", &options).unwrap();
/// options.insert("endpoint".into(), "https://elsewhere.example".into());
/// let e = check_untrusted_options("s3://bucket/lake", &options).unwrap_err();
/// assert!(e.to_string().contains("\"endpoint\""));
/// ```
pub fn check_untrusted_options(url: &str, options: &BTreeMap<String, String>) -> crate::Result<()> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    options.iter().try_for_each(|(k, v)| {
        // an option's name is shown, and only as much of it as a name can be
        let shown: String = k.chars().take(64).collect();
        let reason = match harmless_option(scheme, k) {
            Some(false) => return Ok(()),
            Some(true) => match check_region(v) {
                Ok(()) => return Ok(()),
                Err(e) => format!("option {shown:?}: {e}"),
            },
            None => format!(
                "option {shown:?} is not accepted from a config stored in the lake's store: endpoints, \
                 credentials and where to find them must come from the environment or the local config \
                 (a stored config may set: {})",
                harmless_options(scheme)
            ),
        };
        Err(crate::Error::StoreConfig {
            url: redact_url(url),
            reason,
        })
    })
}

/// Retries and timeout of requests to an instance-metadata or container-credentials service.
/// On an instance it answers within milliseconds; object_store's defaults (10 retries within
/// 3 minutes, 30 s per request) made an address that does not answer look like a hang (a
/// refused port took about a minute before this).
fn metadata_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
    }
}

/// The request timeout of a metadata service, in object_store's notation.
const METADATA_TIMEOUT: &str = "5s";

/// What object_store's three builders share, for the steps that are the same for each store.
trait CloudBuilder: Clone + Default {
    /// The store's configuration keys.
    type Key: Copy + PartialEq + std::str::FromStr;
    /// The store's name in messages ("S3").
    const NAME: &'static str;
    /// The prefix of the store's environment variables (`AWS_`).
    const ENV_PREFIX: &'static str;

    fn client_key(key: ClientConfigKey) -> Self::Key;

    fn set(self, key: Self::Key, value: &str) -> Self;

    /// A setting's value; an empty one counts as unset.
    fn value(&self, key: Self::Key) -> Option<String>;

    /// Credentials that fail each request at once with `message`.
    fn without_credentials(self, message: String) -> Self;

    /// object_store's own credential provider for what `self` holds, with requests to a
    /// metadata service that give up quickly ([`metadata_retry`]); the store's other requests
    /// keep the usual retries.
    fn short_metadata(self) -> Result<Self, String>;

    fn build_store(self) -> object_store::Result<Arc<dyn ObjectStore>>;

    fn has(&self, key: Self::Key) -> bool {
        self.value(key).is_some()
    }

    /// Whether a boolean setting is true.
    fn flag(&self, key: Self::Key) -> bool {
        self.value(key).is_some_and(|v| truthy(&v))
    }
}

macro_rules! cloud_builder {
    ($builder:ty, $key:ident, $name:literal, $prefix:literal) => {
        impl CloudBuilder for $builder {
            type Key = $key;
            const NAME: &'static str = $name;
            const ENV_PREFIX: &'static str = $prefix;

            fn client_key(key: ClientConfigKey) -> $key {
                $key::Client(key)
            }

            fn set(self, key: $key, value: &str) -> Self {
                self.with_config(key, value)
            }

            fn value(&self, key: $key) -> Option<String> {
                self.get_config_value(&key).filter(|v| !v.is_empty())
            }

            fn without_credentials(self, message: String) -> Self {
                self.with_credentials(NoCredentials::provider($name, message))
            }

            fn short_metadata(self) -> Result<Self, String> {
                let probe = self
                    .clone()
                    .with_retry(metadata_retry())
                    .with_config($key::Client(ClientConfigKey::Timeout), METADATA_TIMEOUT)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(self.with_credentials(probe.credentials().clone()))
            }

            fn build_store(self) -> object_store::Result<Arc<dyn ObjectStore>> {
                Ok(Arc::new(self.build()?))
            }
        }
    };
}

cloud_builder!(AmazonS3Builder, AmazonS3ConfigKey, "S3", "AWS_");
cloud_builder!(GoogleCloudStorageBuilder, GoogleConfigKey, "GCS", "GOOGLE_");
cloud_builder!(MicrosoftAzureBuilder, AzureConfigKey, "Azure", "AZURE_");

/// Where a setting came from.
#[derive(Clone, Copy)]
enum Origin {
    Env,
    Options,
}

/// A builder with the settings of the environment and then of `options`, as object_store's
/// `from_env` and `with_config` would make it: the variables starting with the store's prefix,
/// in name order (so that of two names for one setting the same one always wins:
/// `AWS_ENDPOINT_URL` over `AWS_ENDPOINT`, and `AWS_DEFAULT_REGION` never overrides
/// `AWS_REGION`), then `extra` (variables of other names), then the options, where an unknown
/// key is an error. A setting that `set_aside` takes (it returns `true`) is not applied.
///
/// `allow_http` as last set (`None`: never) comes with the builder: object_store's builders do
/// not tell an unset one from `false`.
fn configure<'a, B: CloudBuilder>(
    env: &'a Env,
    extra: impl IntoIterator<Item = (B::Key, &'a str)>,
    options: impl IntoIterator<Item = (&'a String, &'a String)>,
    mut set_aside: impl FnMut(Origin, B::Key, &'a str) -> bool,
) -> Result<(B, Option<&'a str>), String> {
    let mut vars: Vec<(&str, &str)> = env.with_prefix(B::ENV_PREFIX).collect();
    vars.sort();
    let from_env = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase().parse().ok()?, v)))
        .chain(extra)
        .map(|(key, v)| Ok::<_, String>((Origin::Env, key, v)));
    let from_options = options.into_iter().map(|(k, v)| {
        let key = k.parse().map_err(|_| format!("unknown {} option {k:?}", B::NAME))?;
        Ok((Origin::Options, key, v.as_str()))
    });
    let allow_http_key = B::client_key(ClientConfigKey::AllowHttp);
    let mut b = B::default();
    let mut allow_http = None;
    for setting in from_env.chain(from_options) {
        let (origin, key, v) = setting?;
        if set_aside(origin, key, v) {
            continue;
        }
        if key == allow_http_key {
            allow_http = Some(v);
        }
        b = b.set(key, v);
    }
    Ok((b, allow_http))
}

/// `b` with its endpoint (what `what` names) checked ([`check_endpoint`]), and plain HTTP
/// turned on when that endpoint may have it ([`plain_http`]).
fn check_main_endpoint<B: CloudBuilder>(
    b: B,
    what: &str,
    endpoint: &str,
    allow_http: Option<&str>,
) -> Result<B, String> {
    check_endpoint(what, endpoint)?;
    let env_var = format!("{}ALLOW_HTTP", B::ENV_PREFIX);
    Ok(if plain_http(endpoint, allow_http, &env_var)? {
        b.set(B::client_key(ClientConfigKey::AllowHttp), "true")
    } else {
        b
    })
}

/// Check the other endpoints `b` may send requests (and credentials) to, by what names them.
fn check_endpoints<B: CloudBuilder>(b: &B, endpoints: &[(&str, B::Key)]) -> Result<(), String> {
    endpoints
        .iter()
        .filter_map(|&(what, key)| Some((what, b.value(key)?)))
        .try_for_each(|(what, e)| check_endpoint(what, &e))
}

/// One section of an AWS shared config or credentials file.
type Section = BTreeMap<String, String>;

/// The sections of an AWS shared config or credentials file, by their name as written between
/// the brackets (`default`, `profile dev`, `services local`). Keys are lower-cased; a nested
/// setting (`s3 =` followed by indented `key = value` lines) is kept as `s3.key`. Comments are
/// lines starting with `#` or `;`, and `#` or `;` after a space in a value.
fn parse_aws_ini(text: &str) -> BTreeMap<String, Section> {
    let mut out: BTreeMap<String, Section> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            section = rest
                .split_once(']')
                .map(|(name, _)| name.split_whitespace().collect::<Vec<_>>().join(" "));
            parent = None;
            continue;
        }
        let (Some(name), Some((k, v))) = (&section, line.split_once('=')) else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let mut v = v.trim();
        // a comment begins at `#` or `;` after white space
        let b = v.as_bytes();
        if let Some(i) = (1..b.len()).find(|&i| matches!(b[i], b'#' | b';') && matches!(b[i - 1], b' ' | b'\t')) {
            v = v[..i].trim_end();
        }
        let entries = out.entry(name.clone()).or_default();
        match (&parent, indented) {
            (Some(p), true) => {
                entries.insert(format!("{p}.{k}"), v.to_string());
            }
            (None, true) => {}
            (_, false) if v.is_empty() => parent = Some(k),
            (_, false) => {
                parent = None;
                entries.insert(k, v.to_string());
            }
        }
    }
    out
}

/// A profile's settings from the shared credentials and config files, and how the search went
/// (for the error when nothing is found).
struct Profile {
    name: String,
    /// Credentials file entries first, then the config file's for keys it does not have.
    settings: Section,
    /// The `services` section the profile names, if any.
    services: Section,
    /// One note per file: "~/.aws/credentials profile \"x\" (no such file)".
    searched: Vec<String>,
    found: bool,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // settings hold secrets: their names only
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("keys", &self.settings.keys().collect::<Vec<_>>())
            .field("found", &self.found)
            .finish()
    }
}

/// Settings a profile may hold that this reader does not follow (with every `sso_*` key): a
/// profile with one of them is an error, never a fall back to other credentials.
const UNSUPPORTED_PROFILE_KEYS: [&str; 5] = [
    "role_arn",
    "source_profile",
    "credential_process",
    "credential_source",
    "web_identity_token_file",
];

impl Profile {
    /// An error when the profile needs something this reader does not follow.
    fn check_supported(&self, by_option: bool) -> Result<(), String> {
        let unsupported: Vec<&str> = self
            .settings
            .keys()
            .map(String::as_str)
            .filter(|k| UNSUPPORTED_PROFILE_KEYS.contains(k) || k.starts_with("sso_"))
            .collect();
        if unsupported.is_empty() {
            return Ok(());
        }
        let name = &self.name;
        Err(format!(
            "AWS profile {name:?} uses {}, which stratalake does not follow (and it does not fall back to other \
             credentials): export its credentials (`aws configure export-credentials --profile {name} --format \
             env`){}",
            unsupported.join(", "),
            if by_option {
                " and remove the store option profile"
            } else {
                ""
            }
        ))
    }

    /// The profile's keys: `None` when it has none, an error when it has half a pair.
    fn keys(&self) -> Result<Option<AwsKeys>, String> {
        let keys = AwsKeys {
            id: self.settings.get("aws_access_key_id").cloned(),
            secret: self.settings.get("aws_secret_access_key").cloned(),
            token: self.settings.get("aws_session_token").cloned(),
        };
        match (&keys.id, &keys.secret) {
            (Some(_), Some(_)) => Ok(Some(keys)),
            (None, None) => Ok(None),
            (id, _) => {
                let (has, lacks) = match id {
                    Some(_) => ("aws_access_key_id", "aws_secret_access_key"),
                    None => ("aws_secret_access_key", "aws_access_key_id"),
                };
                Err(format!("AWS profile {:?} has {has} but no {lacks}", self.name))
            }
        }
    }
}

/// Profile files are small; anything larger is not one (and is not read into memory whole).
const MAX_PROFILE_FILE: u64 = 1 << 20;

/// Read a shared file: `Ok(None)` when it does not exist.
fn read_shared(path: &FsPath) -> Result<Option<BTreeMap<String, Section>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_PROFILE_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_PROFILE_FILE {
        return Err(format!(
            "cannot read {}: larger than 1 MiB, which no AWS config or credentials file is",
            path.display()
        ));
    }
    Ok(Some(parse_aws_ini(&text)))
}

/// `value` of a file variable, with a leading `~/` (or a lone `~`) as the home folder, as the
/// AWS CLI reads it; `None` when it needs the home folder and HOME is not set.
fn expand_home(value: &str, home: Option<&FsPath>) -> Option<PathBuf> {
    match value.strip_prefix('~') {
        Some("") => home.map(FsPath::to_path_buf),
        Some(rest) if rest.starts_with('/') => home.map(|h| h.join(rest.trim_start_matches('/'))),
        _ => Some(PathBuf::from(value)),
    }
}

/// Read a profile. Errors are files that exist but cannot be read.
fn load_profile(name: &str, env: &Env) -> Result<Profile, String> {
    let home = env.home();
    let file = |var: &str, rel: &str| -> (String, Option<PathBuf>) {
        match env.get(var) {
            Some(v) => (format!("{var}={v}"), expand_home(v, home.as_deref())),
            None => (format!("~/{rel}"), home.as_ref().map(|h| h.join(rel))),
        }
    };
    let mut p = Profile {
        name: name.to_string(),
        settings: Section::new(),
        services: Section::new(),
        searched: Vec::new(),
        found: false,
    };
    let mut config_sections = BTreeMap::new();
    let sources = [
        (
            file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            vec![name.to_string()],
        ),
        (
            file("AWS_CONFIG_FILE", ".aws/config"),
            if name == "default" {
                vec!["default".to_string(), "profile default".to_string()]
            } else {
                vec![format!("profile {name}")]
            },
        ),
    ];
    for (i, ((label, path), sections)) in sources.into_iter().enumerate() {
        let Some(path) = path else {
            p.searched.push(format!("{label} (HOME is not set)"));
            continue;
        };
        let note = match read_shared(&path)? {
            None => "no such file",
            Some(all) => {
                let hit = sections.iter().find_map(|s| all.get(s));
                let note = match hit {
                    None => "no such profile",
                    Some(s) => {
                        p.found = true;
                        for (k, v) in s {
                            p.settings.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                        if s.contains_key("aws_access_key_id") || s.contains_key("aws_secret_access_key") {
                            "found"
                        } else {
                            "no keys in it"
                        }
                    }
                };
                if i == 1 {
                    config_sections = all;
                }
                note
            }
        };
        p.searched.push(format!("{} profile {name:?} ({note})", path.display()));
    }
    if let Some(s) = p.settings.get("services")
        && let Some(sec) = config_sections.get(&format!("services {s}"))
    {
        p.services = sec.clone();
    }
    Ok(p)
}

/// The profile S3 uses, read from its files only when something is needed from it.
struct ProfileSource<'a> {
    name: String,
    /// Named by the option, AWS_PROFILE or AWS_DEFAULT_PROFILE (not the implicit `default`).
    named: bool,
    env: &'a Env,
    loaded: Option<Profile>,
}

impl ProfileSource<'_> {
    /// The profile; unreadable files are an error.
    fn get(&mut self) -> Result<&Profile, String> {
        if self.loaded.is_none() {
            let p = load_profile(&self.name, self.env)?;
            self.found(&p)?;
            self.loaded = Some(p);
        }
        Ok(self.loaded.as_ref().expect("loaded above"))
    }

    /// The profile for settings other than credentials, once credentials came from elsewhere:
    /// unreadable files are skipped then, with a warning (`None`).
    fn for_settings(&mut self) -> Result<Option<&Profile>, String> {
        if self.loaded.is_none() {
            match load_profile(&self.name, self.env) {
                Ok(p) => {
                    self.found(&p)?;
                    self.loaded = Some(p);
                }
                Err(reason) => {
                    tracing::warn!(%reason, profile = %self.name, "AWS profile files skipped");
                    return Ok(None);
                }
            }
        }
        Ok(self.loaded.as_ref())
    }

    /// A profile that was asked for by name must exist.
    fn found(&self, p: &Profile) -> Result<(), String> {
        if self.named && !p.found {
            return Err(format!(
                "AWS profile {:?} not found (looked in: {})",
                self.name,
                p.searched.join(", ")
            ));
        }
        Ok(())
    }
}

/// Access key, secret and session token from one source: a token is only ever used with the
/// keys of its own source.
#[derive(Default)]
struct AwsKeys {
    id: Option<String>,
    secret: Option<String>,
    token: Option<String>,
}

impl AwsKeys {
    /// Keep `v` when `key` is one of the three (an empty value counts as unset); `false` for
    /// any other key.
    fn take(&mut self, key: AmazonS3ConfigKey, v: &str) -> bool {
        let slot = match key {
            AmazonS3ConfigKey::AccessKeyId => &mut self.id,
            AmazonS3ConfigKey::SecretAccessKey => &mut self.secret,
            AmazonS3ConfigKey::Token => &mut self.token,
            _ => return false,
        };
        *slot = Some(v.to_string()).filter(|v| !v.is_empty());
        true
    }

    fn any(&self) -> bool {
        self.id.is_some() || self.secret.is_some() || self.token.is_some()
    }

    /// Both keys, or an error naming what is missing (`names`: of the id, secret and token in
    /// this source).
    fn pair(self, names: [&str; 3]) -> Result<Self, String> {
        match (&self.id, &self.secret) {
            (Some(_), Some(_)) => Ok(self),
            (Some(_), None) => Err(format!("{} is set but {} is not", names[0], names[1])),
            (None, Some(_)) => Err(format!("{} is set but {} is not", names[1], names[0])),
            (None, None) => Err(format!("{} is set without {} and {}", names[2], names[0], names[1])),
        }
    }

    fn apply(self, b: AmazonS3Builder) -> AmazonS3Builder {
        let mut b = b
            .with_access_key_id(self.id.unwrap_or_default())
            .with_secret_access_key(self.secret.unwrap_or_default());
        if let Some(t) = self.token {
            b = b.with_token(t);
        }
        b
    }
}

/// Where a store's credentials come from, as decided before object_store builds it.
enum Source {
    /// Keys given here (options, environment or profile).
    Keys(AwsKeys),
    /// Requests are not signed.
    Unsigned,
    /// object_store's own provider for what the builder holds (web identity, container
    /// credentials); `metadata`: it asks a local metadata-like service.
    Builder { metadata: bool },
    /// Nothing given: instance metadata, or nothing at all.
    Nothing,
}

fn s3(bucket: &str, options: &BTreeMap<String, String>, env: &Env) -> Result<(AmazonS3Builder, Remote), String> {
    use AmazonS3ConfigKey as K;
    NameRules::S3.check(bucket)?;
    let (profile_options, options): (Vec<_>, Vec<_>) = options
        .iter()
        .partition(|(k, _)| *k == "profile" || *k == "aws_profile");
    let option_profile = profile_options
        .last()
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty());
    // keys kept apart by source, so that they are only used when their source is chosen
    let mut env_keys = AwsKeys::default();
    let mut option_keys = AwsKeys::default();
    // the SDKs' other name of AWS_METADATA_ENDPOINT
    let metadata_endpoint = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .filter(|_| env.get("AWS_METADATA_ENDPOINT").is_none())
        .map(|v| (K::MetadataEndpoint, v));
    let (mut b, allow_http) =
        configure::<AmazonS3Builder>(env, metadata_endpoint, options, |origin, key, v| match origin {
            Origin::Env => env_keys.take(key, v),
            Origin::Options => option_keys.take(key, v),
        })?;
    let env_profile = env
        .get("AWS_PROFILE")
        .or_else(|| env.get("AWS_DEFAULT_PROFILE"))
        .map(str::to_string);
    let by_option = option_profile.is_some();
    let mut profile = ProfileSource {
        named: by_option || env_profile.is_some(),
        name: option_profile
            .clone()
            .or(env_profile)
            .unwrap_or_else(|| "default".to_string()),
        env,
        loaded: None,
    };

    let web_identity = b.has(K::WebIdentityTokenFile) && b.has(K::RoleArn);
    let container = b.has(K::ContainerCredentialsRelativeUri)
        || (b.has(K::ContainerCredentialsFullUri) && b.has(K::ContainerAuthorizationTokenFile));
    let source = if b.flag(K::SkipSignature) {
        Source::Unsigned
    } else if option_keys.any() {
        if let Some(p) = &option_profile {
            return Err(format!(
                "the store options give both access keys and profile {p:?}: give one of them"
            ));
        }
        Source::Keys(option_keys.pair([
            "option access_key_id",
            "option secret_access_key",
            "option session_token",
        ])?)
    } else if !by_option && (env_keys.id.is_some() || env_keys.secret.is_some()) {
        // as in the AWS CLI, the environment's keys win over AWS_PROFILE (not over --profile)
        Source::Keys(env_keys.pair(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"])?)
    } else {
        // the profile comes next (the CLI follows its roles and processes before web identity
        // and container credentials): what it needs and this reader does not follow is an error
        let p = profile.get()?;
        p.check_supported(by_option)?;
        match p.keys()? {
            Some(keys) if by_option => Source::Keys(keys),
            _ if web_identity || container => Source::Builder { metadata: container },
            Some(keys) => Source::Keys(keys),
            None => Source::Nothing,
        }
    };

    // region and endpoint: the profile fills what the options and the environment leave open
    let need_region = !b.has(K::Region);
    let need_endpoint = !(b.has(K::S3Endpoint) || b.has(K::Endpoint));
    if (need_region || need_endpoint)
        && let Some(p) = profile.for_settings()?
    {
        if need_region && let Some(r) = p.settings.get("region") {
            b = b.with_region(r);
        }
        if need_endpoint
            && let Some(e) = p
                .services
                .get("s3.endpoint_url")
                .or_else(|| p.settings.get("endpoint_url"))
        {
            b = b.with_endpoint(e);
        }
    }
    let region = b.value(K::Region).unwrap_or_else(|| "us-east-1".into());
    check_region(&region)?;
    let endpoint = b.value(K::S3Endpoint).or_else(|| b.value(K::Endpoint));
    if let Some(e) = &endpoint {
        b = check_main_endpoint(b, "endpoint", e, allow_http)?;
    }
    check_endpoints(
        &b,
        &[
            ("metadata endpoint", K::MetadataEndpoint),
            ("container credentials URI", K::ContainerCredentialsFullUri),
            ("STS endpoint", K::StsEndpoint),
        ],
    )?;
    let remote = Remote {
        kind: "bucket",
        name: bucket.to_string(),
        endpoint: redact_url(&endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"))),
    };

    let b = b.with_bucket_name(bucket);
    let b = match source {
        Source::Keys(keys) => keys.apply(b),
        Source::Unsigned | Source::Builder { metadata: false } => b,
        Source::Builder { metadata: true } => b.short_metadata()?,
        Source::Nothing => {
            let imds = if env.truthy("AWS_EC2_METADATA_DISABLED") {
                Err("instance metadata (AWS_EC2_METADATA_DISABLED is set)".to_string())
            } else if b.has(K::MetadataEndpoint) || env.is_ec2() {
                Ok(())
            } else {
                Err(
                    "instance metadata (skipped: not an EC2 instance; AWS_EC2_METADATA_SERVICE_ENDPOINT asks for it)"
                        .into(),
                )
            };
            match imds {
                Ok(()) => b.short_metadata()?,
                Err(imds) => {
                    let mut looked = vec![if by_option {
                        "environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (skipped: the store option profile \
                         wins over them), web identity, container credentials"
                    } else {
                        "environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and web identity, container credentials)"
                    }
                    .to_string()];
                    looked.extend(profile.loaded.iter().flat_map(|p| p.searched.iter().cloned()));
                    looked.push(imds);
                    b.without_credentials(format!("no S3 credentials found (looked in: {})", looked.join(", ")))
                }
            }
        }
    };
    Ok((b, remote))
}

/// Where Google's tools keep application default credentials, below the home folder.
const GCLOUD_ADC: &str = ".config/gcloud/application_default_credentials.json";

fn gcs(
    bucket: &str,
    options: &BTreeMap<String, String>,
    env: &Env,
) -> Result<(GoogleCloudStorageBuilder, Remote), String> {
    use GoogleConfigKey as K;
    NameRules::Gcs.check(bucket)?;
    let (mut b, allow_http) = configure::<GoogleCloudStorageBuilder>(env, [], options, |_, _, _| false)?;
    let base = b.value(K::BaseUrl);
    if let Some(base) = &base {
        b = check_main_endpoint(b, "base_url", base, allow_http)?;
    }
    let remote = Remote {
        kind: "bucket",
        name: bucket.to_string(),
        endpoint: redact_url(&base.unwrap_or_else(|| "https://storage.googleapis.com".into())),
    };
    let adc = env.home().map(|h| h.join(GCLOUD_ADC));
    // object_store would look for it below the process's HOME, not this environment's
    if !(b.has(K::ServiceAccount) || b.has(K::ServiceAccountKey) || b.has(K::ApplicationCredentials))
        && let Some(adc) = adc.as_ref().filter(|p| p.exists())
    {
        b = b.set(K::ApplicationCredentials, &adc.to_string_lossy());
    }
    let given = b.has(K::ServiceAccount)
        || b.has(K::ServiceAccountKey)
        || b.has(K::ApplicationCredentials)
        || b.flag(K::SkipSignature);
    let metadata = (env.get("GCE_METADATA_HOST").is_some() || env.get("GCE_METADATA_ROOT").is_some() || env.is_gce())
        && !env.truthy("NO_GCE_CHECK");
    let b = b.with_bucket_name(bucket);
    let b = if given {
        b
    } else if metadata {
        // the signing credentials (for signed URLs, which stratalake does not make) keep
        // object_store's retries
        b.short_metadata()?
    } else {
        let adc = adc.map_or(format!("~/{GCLOUD_ADC}"), |p| p.display().to_string());
        b.without_credentials(format!(
            "no GCS credentials found (looked in: options service_account/service_account_key, environment \
             GOOGLE_SERVICE_ACCOUNT, GOOGLE_SERVICE_ACCOUNT_KEY, GOOGLE_APPLICATION_CREDENTIALS, {adc} (no such \
             file), instance metadata (skipped: not a Compute Engine instance; GCE_METADATA_HOST asks for it))"
        ))
    };
    Ok((b, remote))
}

fn azure(
    scheme: &str,
    authority: &str,
    options: &BTreeMap<String, String>,
    env: &Env,
) -> Result<(MicrosoftAzureBuilder, Remote), String> {
    use AzureConfigKey as K;
    let (container, host) = azure_authority(authority)?;
    let msi_endpoint = env.get("IDENTITY_ENDPOINT").map(|v| (K::MsiEndpoint, v));
    let (b, allow_http) = configure::<MicrosoftAzureBuilder>(env, msi_endpoint, options, |_, _, _| false)?;
    // container and account as the URL gives them (object_store parses it)
    let mut b = b.with_url(format!("{scheme}://{authority}"));
    let emulator = b.flag(K::UseEmulator);
    let account = host
        .and_then(|h| h.split('.').next())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .or_else(|| b.value(K::AccountName));
    let endpoint = b.value(K::Endpoint);
    if let Some(e) = &endpoint {
        b = check_main_endpoint(b, "endpoint", e, allow_http)?;
    }
    check_endpoints(
        &b,
        &[
            ("managed identity endpoint", K::MsiEndpoint),
            ("authority host", K::AuthorityHost),
            ("Fabric token service URL", K::FabricTokenServiceUrl),
        ],
    )?;
    let endpoint = if emulator {
        // object_store speaks plain HTTP to the emulator whatever allow_http says
        let base = env.get("AZURITE_BLOB_STORAGE_URL").unwrap_or("http://127.0.0.1:10000");
        check_endpoint("AZURITE_BLOB_STORAGE_URL", base)?;
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            account.as_deref().unwrap_or("devstoreaccount1")
        )
    } else {
        match (endpoint, &account) {
            (Some(e), _) => e,
            (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
            (None, None) => {
                return Err(
                    "no storage account: set AZURE_STORAGE_ACCOUNT_NAME, the option account_name, \
                            or use abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX"
                        .into(),
                );
            }
        }
    };
    let remote = Remote {
        kind: "container",
        name: container.to_string(),
        endpoint: redact_url(&endpoint),
    };
    let given = emulator
        || b.has(K::AccessKey)
        || b.has(K::SasKey)
        || b.has(K::Token)
        || (b.has(K::ClientId)
            && b.has(K::AuthorityId)
            && (b.has(K::ClientSecret) || b.has(K::FederatedTokenFile)))
        // object_store uses Fabric tokens only with all four of these
        || (b.has(K::FabricTokenServiceUrl)
            && b.has(K::FabricWorkloadHost)
            && b.has(K::FabricSessionToken)
            && b.has(K::FabricClusterIdentifier))
        || b.flag(K::UseAzureCli)
        || b.flag(K::SkipSignature);
    let b = if given {
        b
    } else if b.has(K::MsiEndpoint) || env.is_azure_vm() {
        b.short_metadata()?
    } else {
        b.without_credentials(
            "no Azure credentials found (looked in: options and environment AZURE_STORAGE_ACCOUNT_KEY, \
             AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_TOKEN, AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or \
             AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID, AZURE_USE_AZURE_CLI, managed identity \
             (skipped: not an Azure VM; IDENTITY_ENDPOINT asks for it))"
                .to_string(),
        )
    };
    Ok((b, remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_files_parse_as_the_cli_writes_them() {
        let text = r#"# comment
[default]
aws_access_key_id = AKIDEFAULT
aws_secret_access_key=se/cr+et ; the key

[profile  dev]  # trailing
region = eu-central-1
s3 =
  endpoint_url = http://nested
  max_concurrent_requests = 20
endpoint_url = http://top#not-a-comment
  orphan = ignored
[services local]
s3 =
	endpoint_url = http://127.0.0.1:9000
"#;
        let s = parse_aws_ini(text);
        assert_eq!(s["default"]["aws_access_key_id"], "AKIDEFAULT");
        assert_eq!(s["default"]["aws_secret_access_key"], "se/cr+et");
        assert_eq!(s["profile dev"]["region"], "eu-central-1");
        assert_eq!(s["profile dev"]["s3.endpoint_url"], "http://nested");
        assert_eq!(s["profile dev"]["endpoint_url"], "http://top#not-a-comment");
        assert!(!s["profile dev"].contains_key("orphan") && !s["profile dev"].contains_key("s3"));
        assert_eq!(s["services local"]["s3.endpoint_url"], "http://127.0.0.1:9000");
    }

    fn home_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".aws")).unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(".aws").join(name), text).unwrap();
        }
        d
    }

    fn resolve(vars: &[(&str, &str)], options: &[(&str, &str)]) -> Result<(AmazonS3Builder, Remote), String> {
        let opts = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sys = tempfile::tempdir().unwrap();
        s3("bkt", &opts, &Env::new(vars, sys.path()))
    }

    fn key(b: &AmazonS3Builder, k: AmazonS3ConfigKey) -> Option<String> {
        b.get_config_value(&k)
    }

    #[test]
    fn profile_order_and_settings() {
        let home = home_with(&[
            (
                "credentials",
                "[default]\naws_access_key_id=CRED_ID\naws_secret_access_key=CRED_SECRET\n\
                 [dev]\naws_access_key_id=DEV_ID\naws_secret_access_key=DEV_SECRET\naws_session_token=DEV_TOKEN\n",
            ),
            (
                "config",
                "[default]\nregion=eu-west-1\naws_access_key_id=CONFIG_ID\n\
                 [profile dev]\nregion=ap-south-1\nservices=local\n\
                 [services local]\ns3 =\n  endpoint_url = http://127.0.0.1:9000\n\
                 [profile cfgonly]\naws_access_key_id=C_ID\naws_secret_access_key=C_SECRET\n\
                 [profile assumed]\nrole_arn=arn:aws:iam::1:role/x\nsource_profile=default\n",
            ),
        ]);
        let h = home.path().to_str().unwrap();
        // the default profile: the credentials file wins over the config file
        let (b, r) = resolve(&[("HOME", h)], &[]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("CRED_ID"));
        assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some("eu-west-1"));
        assert_eq!(r.endpoint, "https://s3.eu-west-1.amazonaws.com");
        // AWS_PROFILE, its session token, its services section's endpoint; http allows http
        let (b, r) = resolve(&[("HOME", h), ("AWS_PROFILE", "dev")], &[]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::Token).as_deref(), Some("DEV_TOKEN"));
        assert_eq!(r.endpoint, "http://127.0.0.1:9000");
        assert_eq!(
            key(&b, AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)).as_deref(),
            Some("true")
        );
        // the option wins over AWS_PROFILE; a profile only in the config file
        let (b, _) = resolve(&[("HOME", h), ("AWS_PROFILE", "dev")], &[("profile", "cfgonly")]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("C_ID"));
        // environment keys win over any profile; options and environment win over its region
        let (b, _) = resolve(
            &[
                ("HOME", h),
                ("AWS_PROFILE", "dev"),
                ("AWS_ACCESS_KEY_ID", "ENV_ID"),
                ("AWS_SECRET_ACCESS_KEY", "ENV_SECRET"),
                ("AWS_DEFAULT_REGION", "us-west-2"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("ENV_ID"));
        assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some("us-west-2"));
        let (b, _) = resolve(
            &[
                ("HOME", h),
                ("AWS_REGION", "sa-east-1"),
                ("AWS_DEFAULT_REGION", "us-west-2"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some("sa-east-1"));
        let (b, _) = resolve(&[("HOME", h)], &[("region", "ca-central-1")]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some("ca-central-1"));
        // a named profile that does not exist is an error naming the files
        let e = resolve(&[("HOME", h), ("AWS_PROFILE", "nope")], &[]).unwrap_err();
        assert!(
            e.contains("\"nope\" not found") && e.contains(".aws/credentials"),
            "{e}"
        );
        // a profile with one half of a key pair
        let half = home_with(&[("credentials", "[default]\naws_access_key_id=ONLY_ID\n")]);
        let e = resolve(&[("HOME", half.path().to_str().unwrap())], &[]).unwrap_err();
        assert!(e.contains("no aws_secret_access_key") && !e.contains("ONLY_ID"), "{e}");
    }

    #[tokio::test]
    async fn nothing_configured_fails_at_once_naming_where_it_looked() {
        use object_store::ObjectStoreExt;
        let home = home_with(&[("config", "[profile assumed]\nrole_arn=arn:aws:iam::1:role/x\n")]);
        let h = home.path().to_str().unwrap();
        for (vars, expect) in [
            (vec![("HOME", h)], "not an EC2 instance"),
            (
                vec![("HOME", h), ("AWS_EC2_METADATA_DISABLED", "true")],
                "AWS_EC2_METADATA_DISABLED",
            ),
        ] {
            let (b, remote) = resolve(&vars, &[("endpoint", "http://127.0.0.1:9")]).unwrap();
            let store = b.build().unwrap();
            let started = std::time::Instant::now();
            let e = store.get(&"x".into()).await.unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            let msg = remote.explain(&e).unwrap();
            assert!(msg.starts_with("no S3 credentials found (looked in: "), "{msg}");
            assert!(msg.contains(expect) && msg.contains(".aws/credentials profile \"") && !msg.contains('\n'));
        }
        // a profile this reader cannot follow fails before any request
        let e = resolve(&[("HOME", h), ("AWS_PROFILE", "assumed")], &[]).unwrap_err();
        assert!(e.contains("export-credentials --profile assumed"), "{e}");
    }

    #[test]
    fn instance_metadata_only_on_an_instance_or_when_asked() {
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let ec2 = |vars: &[(&str, &str)]| {
            let (b, _) = s3("bkt", &BTreeMap::new(), &Env::new(vars, sys.path())).unwrap();
            // object_store's own provider is left in place exactly when metadata may be asked
            !format!("{:?}", b.build().unwrap()).contains("NoCredentials")
        };
        assert!(!ec2(&[("HOME", h)]));
        assert!(ec2(&[
            ("HOME", h),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
        ]));
        std::fs::create_dir_all(sys.path().join("class/dmi/id")).unwrap();
        std::fs::write(sys.path().join("class/dmi/id/sys_vendor"), "Amazon EC2\n").unwrap();
        assert!(ec2(&[("HOME", h)]));
        assert!(!ec2(&[("HOME", h), ("AWS_EC2_METADATA_DISABLED", "TRUE")]));
    }

    #[test]
    fn gcs_and_azure_urls_and_missing_credentials() {
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let env = Env::new(&[("HOME", home.path().to_str().unwrap())], sys.path());
        let none = BTreeMap::new();
        let o = open("gs://bkt/a/b", &none, &env).unwrap().unwrap();
        assert_eq!((o.prefix.as_str(), o.remote.name.as_str()), ("a/b", "bkt"));
        assert_eq!(o.remote.endpoint, "https://storage.googleapis.com");
        let o = open("abfss://ctr@acct.dfs.core.windows.net/p", &none, &env)
            .unwrap()
            .unwrap();
        assert_eq!((o.prefix.as_str(), o.remote.name.as_str()), ("p", "ctr"));
        assert_eq!(o.remote.endpoint, "https://acct.blob.core.windows.net");
        assert!(
            open("az://ctr/p", &none, &env)
                .err()
                .unwrap()
                .contains("no storage account")
        );
        let emu: BTreeMap<String, String> = [("use_emulator".to_string(), "true".to_string())].into();
        let o = open("az://ctr", &emu, &env).unwrap().unwrap();
        assert_eq!(o.remote.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert!(open("gs:///x", &none, &env).err().unwrap().contains("no bucket"));
        assert!(open("gs://bkt", &[("nope".to_string(), "1".to_string())].into(), &env).is_err());
        assert!(open("ftp://x/y", &none, &env).unwrap().is_none());
    }

    #[tokio::test]
    async fn gcs_and_azure_without_credentials_fail_at_once() {
        use object_store::ObjectStoreExt;
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let env = Env::new(&[("HOME", home.path().to_str().unwrap())], sys.path());
        let opts: BTreeMap<String, String> = [("account_name".to_string(), "acct".to_string())].into();
        for (url, expect) in [
            ("gs://bkt/p", "no GCS credentials"),
            ("az://ctr/p", "no Azure credentials"),
        ] {
            let o = open(url, &opts_for(url, &opts), &env).unwrap().unwrap();
            let started = std::time::Instant::now();
            let e = o.store.get(&"x".into()).await.unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            let msg = o.remote.explain(&e).unwrap();
            assert!(msg.starts_with(expect), "{msg}");
        }
    }

    fn opts_for(url: &str, azure: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        if url.starts_with("az") {
            azure.clone()
        } else {
            BTreeMap::new()
        }
    }

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A `/sys` that says "this is an EC2 instance".
    fn ec2_sys() -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("class/dmi/id")).unwrap();
        std::fs::write(sys.path().join("class/dmi/id/sys_vendor"), "Amazon EC2\n").unwrap();
        sys
    }

    #[test]
    fn region_must_be_a_region_name_wherever_it_comes_from() {
        let home = home_with(&[("config", "[default]\nregion = x.evil.com/\n")]);
        let h = home.path().to_str().unwrap();
        for bad in ["x.evil.com/", "us-east-1.evil.com", "US-EAST-1", "a b", "eu-west-1#"] {
            let e = resolve(&[], &[("region", bad)]).unwrap_err();
            assert!(e.contains("region") && !e.contains(bad), "{e}");
            assert!(resolve(&[("AWS_REGION", bad)], &[]).is_err());
            assert!(resolve(&[("AWS_DEFAULT_REGION", bad)], &[]).is_err());
        }
        assert!(resolve(&[("HOME", h)], &[("access_key_id", "a"), ("secret_access_key", "b")]).is_err());
        for good in ["eu-west-1", "auto", "us-gov-west-1"] {
            let (b, r) = resolve(&[], &[("region", good)]).unwrap();
            assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some(good));
            assert_eq!(r.endpoint, format!("https://s3.{good}.amazonaws.com"));
        }
    }

    #[test]
    fn a_profile_option_wins_over_environment_keys() {
        let home = home_with(&[(
            "credentials",
            "[dev]\naws_access_key_id=DEV_ID\naws_secret_access_key=DEV_SECRET\n\
             [other]\naws_access_key_id=OTHER_ID\naws_secret_access_key=OTHER_SECRET\naws_session_token=OTHER_TOKEN\n",
        )]);
        let h = home.path().to_str().unwrap();
        let env_keys = [
            ("HOME", h),
            ("AWS_ACCESS_KEY_ID", "ENV_ID"),
            ("AWS_SECRET_ACCESS_KEY", "ENV_SECRET"),
            ("AWS_SESSION_TOKEN", "ENV_TOKEN"),
        ];
        // like `aws --profile dev`: the profile's keys, and not the environment's session token
        let (b, _) = resolve(&env_keys, &[("profile", "dev")]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("DEV_ID"));
        assert_eq!(
            key(&b, AmazonS3ConfigKey::SecretAccessKey).as_deref(),
            Some("DEV_SECRET")
        );
        assert_eq!(key(&b, AmazonS3ConfigKey::Token), None);
        // AWS_PROFILE loses to the environment's keys, as in the AWS CLI
        let mut vars = env_keys.to_vec();
        vars.push(("AWS_PROFILE", "dev"));
        let (b, _) = resolve(&vars, &[]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("ENV_ID"));
        assert_eq!(key(&b, AmazonS3ConfigKey::Token).as_deref(), Some("ENV_TOKEN"));
        // the option wins over AWS_PROFILE and AWS_DEFAULT_PROFILE too
        let mut vars = env_keys.to_vec();
        vars.extend([("AWS_PROFILE", "other"), ("AWS_DEFAULT_PROFILE", "other")]);
        let (b, _) = resolve(&vars, &[("profile", "dev")]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("DEV_ID"));
        // keys and a profile in the options contradict each other
        let e = resolve(
            &[("HOME", h)],
            &[
                ("profile", "dev"),
                ("access_key_id", "A"),
                ("secret_access_key", "OPT_SECRET"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("profile") && !e.contains("OPT_SECRET"), "{e}");
    }

    #[test]
    fn aws_default_profile_counts_when_aws_profile_is_unset() {
        let home = home_with(&[
            (
                "credentials",
                "[default]\naws_access_key_id=DEFAULT_ID\naws_secret_access_key=DEFAULT_SECRET\n\
                 [dev]\naws_access_key_id=DEV_ID\naws_secret_access_key=DEV_SECRET\n",
            ),
            (
                "config",
                "[profile other]\nregion=eu-north-1\naws_access_key_id=OTHER_ID\naws_secret_access_key=S\n",
            ),
        ]);
        let h = home.path().to_str().unwrap();
        let (b, _) = resolve(&[("HOME", h), ("AWS_DEFAULT_PROFILE", "other")], &[]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("OTHER_ID"));
        assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some("eu-north-1"));
        // AWS_PROFILE comes first; an empty one counts as unset
        for (profile, id) in [("dev", "DEV_ID"), ("", "OTHER_ID")] {
            let (b, _) = resolve(
                &[("HOME", h), ("AWS_PROFILE", profile), ("AWS_DEFAULT_PROFILE", "other")],
                &[],
            )
            .unwrap();
            assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some(id));
        }
        // named, it must exist: no falling back to the default profile
        let e = resolve(&[("HOME", h), ("AWS_DEFAULT_PROFILE", "nope")], &[]).unwrap_err();
        assert!(e.contains("\"nope\" not found"), "{e}");
    }

    #[test]
    fn unsupported_profile_features_fail_whatever_else_is_there() {
        let home = home_with(&[
            (
                "credentials",
                "[roled]\naws_access_key_id=R_ID\naws_secret_access_key=R_SECRET\n",
            ),
            (
                "config",
                "[profile roled]\nrole_arn=arn:aws:iam::1:role/x\nsource_profile=base\n\
                 [profile process]\ncredential_process=/bin/creds\n\
                 [profile src]\nrole_arn=arn:aws:iam::1:role/x\ncredential_source=Ec2InstanceMetadata\n\
                 [profile web]\nweb_identity_token_file=/t\n\
                 [profile sso]\nsso_account_id=1\nsso_role_name=r\n\
                 [profile ssos]\nsso_session=corp\n",
            ),
        ]);
        let h = home.path().to_str().unwrap();
        // on an instance, where instance metadata would otherwise be asked
        let sys = ec2_sys();
        for (profile, feature) in [
            ("roled", "role_arn"),
            ("process", "credential_process"),
            ("src", "credential_source"),
            ("web", "web_identity_token_file"),
            ("sso", "sso_account_id"),
            ("ssos", "sso_session"),
        ] {
            for (vars, options) in [
                (vec![("HOME", h), ("AWS_PROFILE", profile)], vec![]),
                (vec![("HOME", h), ("AWS_DEFAULT_PROFILE", profile)], vec![]),
                (
                    vec![("HOME", h), ("AWS_ACCESS_KEY_ID", "E"), ("AWS_SECRET_ACCESS_KEY", "S")],
                    vec![("profile", profile)],
                ),
                (
                    vec![("HOME", h), ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds")],
                    vec![("profile", profile)],
                ),
            ] {
                let e = s3("bkt", &opts(&options), &Env::new(&vars, sys.path())).unwrap_err();
                assert!(
                    e.contains(&format!("AWS profile {profile:?} uses {feature}"))
                        && e.contains("export-credentials")
                        && !e.contains("R_SECRET"),
                    "{e}"
                );
            }
        }
        // keys in the environment still win over AWS_PROFILE, as in the AWS CLI
        let (b, _) = resolve(
            &[
                ("HOME", h),
                ("AWS_PROFILE", "roled"),
                ("AWS_ACCESS_KEY_ID", "ENV_ID"),
                ("AWS_SECRET_ACCESS_KEY", "ENV_SECRET"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("ENV_ID"));
    }

    #[test]
    fn credentials_in_a_url_are_refused_without_echo() {
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let env = Env::new(&[("HOME", home.path().to_str().unwrap())], sys.path());
        let keys = opts(&[
            ("access_key_id", "a"),
            ("secret_access_key", "b"),
            ("account_name", "acct"),
        ]);
        for url in [
            "s3://AKIDX:SeCrEt@bkt/p",
            "s3://AKIDX:SeC/rEt@bkt/p",
            "s3://bkt/p?X-Amz-Signature=SeCrEt",
            "s3://bkt/p#SeCrEt",
            "s3://SeCrEt",
            "gs://AKIDX:SeCrEt@bkt/p",
            "az://AKIDX:SeCrEt@ctr/p",
            "abfss://AKIDX:SeCrEt@ctr@acct.dfs.core.windows.net/p",
            "abfss://ctr@AKIDX:SeCrEt@acct.dfs.core.windows.net/p",
        ] {
            let o = if url.starts_with('s') {
                opts(&[("access_key_id", "a"), ("secret_access_key", "b")])
            } else {
                keys.clone()
            };
            let e = open(url, &o, &env)
                .err()
                .unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(!e.contains("SeC") && !e.contains("AKIDX"), "{e}");
            let e = crate::store::Store::open_in(url, &o, &env).unwrap_err().to_string();
            assert!(!e.contains("SeC") && !e.contains("AKIDX"), "{e}");
        }
        let e = open("s3://AKIDX:SeCrEt@bkt/p", &keys, &env).err().unwrap();
        assert_eq!(
            e,
            "the bucket name in the URL contains characters not allowed in bucket names (credentials belong \
             in the environment or the config, never in the URL)"
        );
        // an endpoint's user name, password and query are neither used nor shown
        for endpoint in [
            "https://user:SeCrEt@minio.example:9000",
            "https://minio.example:9000/?token=SeCrEt",
            "https://user:SeC/rEt@minio.example:9000",
        ] {
            let e = resolve(&[], &[("endpoint", endpoint)]).unwrap_err();
            assert!(!e.contains("SeC") && e.contains("endpoint"), "{e}");
        }
        // wherever the endpoint comes from, and for every store
        let endpoint = "https://user:SeCrEt@minio.example:9000";
        let profile = home_with(&[("config", &format!("[default]\nendpoint_url = {endpoint}\n"))]);
        let env_keys = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        for vars in [
            vec![("AWS_ENDPOINT_URL", endpoint)],
            vec![("HOME", profile.path().to_str().unwrap())],
        ] {
            let e = resolve(&[vars, env_keys.to_vec()].concat(), &[]).unwrap_err();
            assert!(!e.contains("SeC") && e.contains("endpoint"), "{e}");
        }
        let e = gcs("bkt", &opts(&[("base_url", endpoint)]), &env).unwrap_err();
        assert!(!e.contains("SeC") && e.contains("base_url"), "{e}");
        let e = azure(
            "az",
            "ctr",
            &opts(&[("account_name", "acct"), ("endpoint", endpoint)]),
            &env,
        )
        .err()
        .unwrap();
        assert!(!e.contains("SeC") && e.contains("endpoint"), "{e}");
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        for (url, shown) in [
            (
                "https://user:SeCrEt@minio.example:9000/x?X-Amz-Signature=SeCrEt#SeCrEt",
                "https://minio.example:9000/x",
            ),
            ("https://user:SeC/rEt@minio.example:9000", "https://minio.example:9000"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
            ("s3://bkt/p?X-Amz-Signature=SeCrEt", "s3://bkt/p"),
            ("s3://AKIDX:SeCrEt@bkt/p", "s3://(name withheld)"),
            ("gs://AKIDX:SeC/rEt@bkt/p", "gs://(name withheld)"),
            (
                "abfss://ctr@acct.dfs.core.windows.net/p",
                "abfss://ctr@acct.dfs.core.windows.net/p",
            ),
            (
                "abfss://ctr@AKIDX:SeCrEt@acct.dfs.core.windows.net/p",
                "abfss://(name withheld)",
            ),
            ("/local/path", "/local/path"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        // what a store shows of its endpoint
        let (_, remote) = resolve(&[], &[("endpoint", "https://minio.example:9000/")]).unwrap();
        assert_eq!(remote.endpoint, "https://minio.example:9000/");
    }

    #[test]
    fn plain_http_only_to_this_machine_unless_allowed() {
        let allow = |b: &AmazonS3Builder| key(b, AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
        for endpoint in [
            "http://127.0.0.1:9000",
            "http://127.8.9.10",
            "http://localhost:9000",
            "HTTP://LOCALHOST:9000/",
            "http://[::1]:9000",
        ] {
            let (b, _) = resolve(&[], &[("endpoint", endpoint)]).unwrap();
            assert_eq!(allow(&b).as_deref(), Some("true"), "{endpoint}");
        }
        for endpoint in [
            "http://minio.example:9000",
            "http://10.0.0.5:9000",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
        ] {
            let e = resolve(&[], &[("endpoint", endpoint)]).unwrap_err();
            assert!(e.contains("allow_http=true") && e.contains("AWS_ALLOW_HTTP"), "{e}");
            let (b, _) = resolve(&[], &[("endpoint", endpoint), ("allow_http", "true")]).unwrap();
            assert_eq!(allow(&b).as_deref(), Some("true"));
            let (b, _) = resolve(&[("AWS_ALLOW_HTTP", "yes")], &[("endpoint", endpoint)]).unwrap();
            assert_eq!(allow(&b).as_deref(), Some("true"));
        }
        // an explicit allow_http=false is not overruled, even on this machine
        let e = resolve(&[], &[("endpoint", "http://127.0.0.1:9000"), ("allow_http", "false")]).unwrap_err();
        assert!(e.contains("allow_http"), "{e}");
        // the same for GCS and Azure
        let sys = tempfile::tempdir().unwrap();
        let env = Env::new(&[], sys.path());
        assert!(gcs("bkt", &opts(&[("base_url", "http://127.0.0.1:4443")]), &env).is_ok());
        let e = gcs("bkt", &opts(&[("base_url", "http://gcs.example")]), &env).unwrap_err();
        assert!(e.contains("allow_http=true") && e.contains("GOOGLE_ALLOW_HTTP"), "{e}");
        let az = |o: &[(&str, &str)]| azure("az", "ctr", &opts(o), &env);
        assert!(az(&[("account_name", "acct"), ("endpoint", "http://127.0.0.1:10000/acct")]).is_ok());
        let e = az(&[("account_name", "acct"), ("endpoint", "http://azure.example/acct")])
            .err()
            .unwrap();
        assert!(e.contains("allow_http=true") && e.contains("AZURE_ALLOW_HTTP"), "{e}");
        assert!(
            az(&[
                ("account_name", "acct"),
                ("endpoint", "http://azure.example/acct"),
                ("allow_http", "true")
            ])
            .is_ok()
        );
    }

    #[tokio::test]
    async fn instance_metadata_gives_up_quickly() {
        use object_store::ObjectStoreExt;
        // a port on this machine where nothing listens: every connection is refused, and
        // object_store's default retries (10, with backoff up to 15 s) would take about a minute
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let metadata = format!("http://127.0.0.1:{port}");
        let env = Env::new(
            &[
                ("HOME", home.path().to_str().unwrap()),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata),
            ],
            sys.path(),
        );
        let (b, _) = s3("bkt", &opts(&[("endpoint", "http://127.0.0.1:9")]), &env).unwrap();
        let store = b.build().unwrap();
        let started = std::time::Instant::now();
        store.get(&"x".into()).await.unwrap_err();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_fabric_token_service_url_alone_is_no_credential() {
        let sys = tempfile::tempdir().unwrap();
        let env = Env::new(&[], sys.path());
        let o = opts(&[
            ("account_name", "acct"),
            ("fabric_token_service_url", "https://fabric.example"),
        ]);
        let (b, _) = azure("az", "ctr", &o, &env).unwrap();
        assert!(format!("{:?}", b.build().unwrap()).contains("NoCredentials"));
    }

    #[test]
    fn unreadable_profile_files_do_not_fail_a_store_with_credentials() {
        // a directory where the credentials file should be: reading it fails
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws/credentials")).unwrap();
        let h = home.path().to_str().unwrap();
        let (b, _) = resolve(&[("HOME", h)], &[("access_key_id", "a"), ("secret_access_key", "b")]).unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("a"));
        resolve(
            &[("HOME", h), ("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")],
            &[],
        )
        .unwrap();
        // without other credentials the file is needed, and its error tells why
        let e = resolve(&[("HOME", h)], &[]).unwrap_err();
        assert!(e.contains("cannot read") && e.contains(".aws/credentials"), "{e}");
    }

    #[test]
    fn a_session_token_only_goes_with_keys_of_its_source() {
        let (b, _) = resolve(
            &[("AWS_SESSION_TOKEN", "ENV_TOKEN")],
            &[("access_key_id", "a"), ("secret_access_key", "b")],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::Token), None);
        let (b, _) = resolve(
            &[
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
                ("AWS_SESSION_TOKEN", ""),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::Token), None);
        let home = home_with(&[(
            "credentials",
            "[default]\naws_access_key_id=P_ID\naws_secret_access_key=P_SECRET\n",
        )]);
        let (b, _) = resolve(
            &[
                ("HOME", home.path().to_str().unwrap()),
                ("AWS_SESSION_TOKEN", "ENV_TOKEN"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("P_ID"));
        assert_eq!(key(&b, AmazonS3ConfigKey::Token), None);
    }

    #[test]
    fn booleans_read_as_object_store_reads_them() {
        let sys = ec2_sys();
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let metadata = |v: &str| {
            let (b, _) = s3(
                "bkt",
                &BTreeMap::new(),
                &Env::new(&[("HOME", h), ("AWS_EC2_METADATA_DISABLED", v)], sys.path()),
            )
            .unwrap();
            !format!("{:?}", b.build().unwrap()).contains("NoCredentials")
        };
        for v in ["y", "Y", "yes", "true", "1", "on"] {
            assert!(!metadata(v), "{v}");
        }
        for v in ["n", "no", "false", "0", "off"] {
            assert!(metadata(v), "{v}");
        }
    }

    #[test]
    fn profile_file_variables_expand_the_home_folder() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("elsewhere")).unwrap();
        std::fs::write(
            home.path().join("elsewhere/creds"),
            "[default]\naws_access_key_id=T_ID\naws_secret_access_key=T_SECRET\n",
        )
        .unwrap();
        std::fs::write(home.path().join("elsewhere/conf"), "[default]\nregion=eu-north-1\n").unwrap();
        let (b, _) = resolve(
            &[
                ("HOME", home.path().to_str().unwrap()),
                ("AWS_SHARED_CREDENTIALS_FILE", "~/elsewhere/creds"),
                ("AWS_CONFIG_FILE", "~/elsewhere/conf"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(key(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("T_ID"));
        assert_eq!(key(&b, AmazonS3ConfigKey::Region).as_deref(), Some("eu-north-1"));
    }

    #[test]
    fn profile_files_are_read_up_to_a_mebibyte() {
        let mut text = "[default]\naws_access_key_id=BIG_ID\naws_secret_access_key=BIG_SECRET\n".to_string();
        text.push_str(&"# padding\n".repeat(120_000));
        let home = home_with(&[("credentials", &text)]);
        let e = resolve(&[("HOME", home.path().to_str().unwrap())], &[]).unwrap_err();
        assert!(e.contains("1 MiB") && !e.contains("BIG_SECRET"), "{e}");
    }

    #[test]
    fn secrets_are_in_no_error_and_no_debug_output() {
        let sys = tempfile::tempdir().unwrap();
        // each secret starts with "SeCrEt", or is a key whose base64 or bytes would be seen
        let key64 = "U2VDckV0LWtleS1ieXRlcy1mb3ItdGhlLXRlc3QtMTI=";
        type Pairs<'a> = Vec<(&'a str, &'a str)>;
        // URL, options, environment, AWS files
        let cases: Vec<(&str, Pairs, Pairs, Pairs)> = vec![
            // in the options
            (
                "s3://bkt/p",
                vec![
                    ("access_key_id", "AKIDVISIBLE"),
                    ("secret_access_key", "SeCrEt-s3"),
                    ("session_token", "SeCrEt-token"),
                    ("sse_customer_key_base64", key64),
                ],
                vec![],
                vec![],
            ),
            ("s3://bkt/p", vec![("secret_access_key", "SeCrEt-half")], vec![], vec![]),
            (
                "s3://bkt/p",
                vec![("session_token", "SeCrEt-token-alone")],
                vec![],
                vec![],
            ),
            (
                "s3://bkt/p",
                vec![
                    ("access_key_id", "A"),
                    ("secret_access_key", "SeCrEt-x"),
                    ("region", "SeCrEt/"),
                ],
                vec![],
                vec![],
            ),
            (
                "s3://bkt/p",
                vec![
                    ("access_key_id", "A"),
                    ("secret_access_key", "SeCrEt-http"),
                    ("endpoint", "http://minio.example:9000"),
                ],
                vec![],
                vec![],
            ),
            (
                "az://ctr/p",
                vec![("account_name", "acct"), ("access_key", key64)],
                vec![],
                vec![],
            ),
            (
                "az://ctr/p",
                vec![("account_name", "acct"), ("access_key", "SeCrEt-not-base64")],
                vec![],
                vec![],
            ),
            (
                "az://ctr/p",
                vec![("account_name", "acct"), ("sas_key", "sv=1&sig=SeCrEt-sas")],
                vec![],
                vec![],
            ),
            (
                "az://ctr/p",
                vec![("account_name", "acct"), ("bearer_token", "SeCrEt-bearer")],
                vec![],
                vec![],
            ),
            (
                "gs://bkt/p",
                vec![("service_account_key", "{\"private_key\": \"SeCrEt-gcs\"")],
                vec![],
                vec![],
            ),
            // in the environment
            (
                "s3://bkt/p",
                vec![],
                vec![("AWS_SECRET_ACCESS_KEY", "SeCrEt-env-half")],
                vec![],
            ),
            (
                "s3://bkt/p",
                vec![],
                vec![
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                    ("AWS_SECRET_ACCESS_KEY", "SeCrEt-env"),
                    ("AWS_SESSION_TOKEN", "SeCrEt-env-token"),
                    ("AWS_REGION", "SeCrEt.evil/"),
                ],
                vec![],
            ),
            (
                "s3://bkt/p",
                vec![("access_key_id", "A"), ("secret_access_key", "B")],
                vec![("AWS_SESSION_TOKEN", "SeCrEt-other-source")],
                vec![],
            ),
            (
                "s3://bkt/p",
                vec![],
                vec![
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                    ("AWS_SECRET_ACCESS_KEY", "SeCrEt-env"),
                    ("AWS_ENDPOINT_URL", "http://minio.example:9000"),
                ],
                vec![],
            ),
            (
                "az://ctr/p",
                vec![],
                vec![
                    ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                    ("AZURE_STORAGE_ACCOUNT_KEY", "SeCrEt-not-base64"),
                ],
                vec![],
            ),
            (
                "gs://bkt/p",
                vec![],
                vec![("GOOGLE_SERVICE_ACCOUNT_KEY", "{\"private_key\": \"SeCrEt-gcs-env\"")],
                vec![],
            ),
            // in the AWS files
            (
                "s3://bkt/p",
                vec![],
                vec![],
                vec![("credentials", "[default]\naws_secret_access_key=SeCrEt-profile-half\n")],
            ),
            (
                "s3://bkt/p",
                vec![],
                vec![],
                vec![(
                    "credentials",
                    "[default]\naws_access_key_id=ID\naws_secret_access_key=SeCrEt-p\n\
                     aws_session_token=SeCrEt-pt\nregion=SeCrEt/x\n",
                )],
            ),
            (
                "s3://bkt/p",
                vec![("profile", "roled")],
                vec![("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "SeCrEt-env")],
                vec![
                    (
                        "credentials",
                        "[roled]\naws_access_key_id=ID\naws_secret_access_key=SeCrEt-roled\n",
                    ),
                    (
                        "config",
                        "[profile roled]\nrole_arn=arn:aws:iam::1:role/x\ncredential_process=SeCrEt-cmd\n",
                    ),
                ],
            ),
        ];
        for (url, kv, vars, files) in cases {
            let home = home_with(&files);
            let vars = [vec![("HOME", home.path().to_str().unwrap())], vars].concat();
            let env = Env::new(&vars, sys.path());
            let o = opts(&kv);
            let mut seen = format!("{env:?} {:?}", load_profile("default", &env));
            match open(url, &o, &env) {
                Ok(Some(opened)) => seen.push_str(&format!("{:?} {:?}", opened.remote, CheckedDebug(&opened.store))),
                Ok(None) => unreachable!(),
                Err(e) => seen.push_str(&e),
            }
            match crate::store::Store::open_in(url, &o, &env) {
                Ok(s) => seen.push_str(&format!(" {s:?} {:?} {:?}", s.object_store(), s.read_store())),
                Err(e) => seen.push_str(&format!(" {e} {e:?}")),
            }
            assert!(
                !seen.contains("SeCrEt") && !seen.contains(key64) && !seen.contains("83, 101, 67"),
                "{url}: {seen}"
            );
        }
    }

    #[test]
    fn untrusted_options_choose_no_credentials_endpoints_profiles_or_http() {
        let value = "SeCrEt-value";
        let refused: [(&str, &[&str]); 5] = [
            (
                "s3://bkt/lake",
                &[
                    "endpoint",
                    "aws_endpoint_url",
                    "aws_endpoint_url_s3",
                    "endpoint_url_sts",
                    "metadata_endpoint",
                    "imdsv1_fallback",
                    "proxy_url",
                    "aws_proxy_url",
                    "allow_http",
                    "aws_allow_http",
                    "allow_invalid_certificates",
                    "profile",
                    "aws_profile",
                    "access_key_id",
                    "secret_access_key",
                    "session_token",
                    "token",
                    "container_credentials_relative_uri",
                    "container_credentials_full_uri",
                    "container_authorization_token_file",
                    "web_identity_token_file",
                    "role_arn",
                    "bucket",
                    "conditional_put",
                    "copy_if_not_exists",
                    "sse_customer_key_base64",
                    "no_such_option",
                ],
            ),
            (
                "gs://bkt/lake",
                &[
                    "base_url",
                    "service_account",
                    "service_account_key",
                    "application_credentials",
                    "google_service_account",
                    "bucket",
                    "proxy_url",
                    "allow_http",
                    "region",
                    "disable_tagging",
                ],
            ),
            (
                "abfss://ctr@acct.dfs.core.windows.net/lake",
                &[
                    "account_name",
                    "access_key",
                    "sas_key",
                    "bearer_token",
                    "endpoint",
                    "use_emulator",
                    "msi_endpoint",
                    "client_id",
                    "client_secret",
                    "tenant_id",
                    "federated_token_file",
                    "use_azure_cli",
                    "use_fabric_endpoint",
                    "authority_host",
                    "fabric_token_service_url",
                    "azure_allow_http",
                    "proxy_url",
                    "container_name",
                ],
            ),
            ("memory://lake", &["region", "skip_signature"]),
            ("/local/lake", &["region", "skip_signature"]),
        ];
        for (url, keys) in refused {
            for key in keys {
                let options = opts(&[(key, value)]);
                let e = check_untrusted_options(url, &options).unwrap_err();
                let crate::Error::StoreConfig { reason, .. } = &e else {
                    panic!("{e:?}")
                };
                let text = format!("{e} {e:?}");
                assert!(
                    reason.starts_with(&format!("option {key:?} is not accepted")) && !text.contains("SeCrEt"),
                    "{url} {key}: {text}"
                );
            }
        }
        // what a stored config may set
        for (url, options) in [
            (
                "s3://bkt/lake",
                vec![
                    ("region", "eu-west-1"),
                    ("aws_default_region", "us-east-2"),
                    ("virtual_hosted_style_request", "true"),
                    ("checksum_algorithm", "sha256"),
                    ("skip_signature", "false"),
                    ("disable_tagging", "true"),
                ],
            ),
            ("gs://bkt/lake", vec![("skip_signature", "true")]),
            (
                "az://ctr/lake",
                vec![("skip_signature", "true"), ("disable_tagging", "true")],
            ),
            ("memory://lake", vec![]),
        ] {
            check_untrusted_options(url, &opts(&options)).unwrap();
        }
        // one refused option among accepted ones is enough
        let e = check_untrusted_options(
            "s3://bkt/lake",
            &opts(&[
                ("region", "eu-west-1"),
                ("skip_signature", "false"),
                ("web_identity_token_file", value),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"web_identity_token_file\""), "{e}");
        // a region is a region name: it becomes part of the endpoint's host name
        for region in ["evil.example/", "SeCrEt", "eu-west-1.evil.example", ""] {
            let e = check_untrusted_options("s3://bkt/lake", &opts(&[("aws_region", region)])).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("\"aws_region\"") && (region.is_empty() || !text.contains(region)),
                "{text}"
            );
        }
        // the URL is shown without credentials
        let e = check_untrusted_options("s3://AKIDX:SeCrEt@bkt/lake", &opts(&[("endpoint", "x")])).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("SeCrEt"), "{e}");
    }

    #[test]
    fn secret_values_are_blotted_out_of_foreign_errors() {
        let sys = tempfile::tempdir().unwrap();
        let env = Env::new(
            &[
                ("AWS_SESSION_TOKEN", "SeCrEt-token"),
                ("AZURE_STORAGE_ACCOUNT_KEY", "SeCrEt-az"),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/token-file"),
            ],
            sys.path(),
        );
        let options = opts(&[
            ("secret_access_key", "SeCrEt-key"),
            ("sas_key", "sig=SeCrEt-key-long"),
            ("access_key_id", "AKIDVISIBLE"),
            ("endpoint", "https://minio.example"),
        ]);
        let text = Secrets::of(&options, &env).scrub(
            "sig=SeCrEt-key-long, SeCrEt-key, SeCrEt-token, SeCrEt-az; AKIDVISIBLE https://minio.example \
             /run/token-file",
        );
        assert_eq!(
            text,
            "<secret>, <secret>, <secret>, <secret>; AKIDVISIBLE https://minio.example /run/token-file"
        );
    }

    /// What a `Store` shows of its object store (its `Display`: object_store's `Debug` of an
    /// Azure store prints the access key's bytes).
    struct CheckedDebug<'a>(&'a Arc<dyn ObjectStore>);

    impl fmt::Debug for CheckedDebug<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)
        }
    }
}
