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
//! 2. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`);
//! 3. web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) or container credentials
//!    (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, `..._FULL_URI` + `..._AUTHORIZATION_TOKEN_FILE`);
//! 4. the profile (option `profile`, else `AWS_PROFILE`, else `default`) in the shared
//!    credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), then in the
//!    config file (`AWS_CONFIG_FILE`, else `~/.aws/config`, section `[profile NAME]`);
//! 5. instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`, and only when the
//!    machine says it is an EC2 instance (`/sys/class/dmi/id/*_vendor`, `/sys/hypervisor/uuid`)
//!    or a metadata endpoint is given (`metadata_endpoint`, `AWS_METADATA_ENDPOINT`,
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT`);
//! 6. otherwise: "no S3 credentials found (looked in: ...)", before any request is sent.
//!
//! `region` and `endpoint_url` of the profile fill what the options and the environment do not
//! give. An endpoint whose scheme is `http://` allows plain HTTP (no `allow_http` needed).
//! Secret values never appear in errors, logs or `Debug` output: only names and paths do.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ClientConfigKey, CredentialProvider, ObjectStore};

/// What a cloud store's requests go to, for errors that name it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// "bucket" or "container".
    pub kind: &'static str,
    pub name: String,
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

/// How object_store reads booleans.
fn truthy(v: &str) -> bool {
    ["true", "1", "yes", "on"]
        .iter()
        .any(|t| v.trim().eq_ignore_ascii_case(t))
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

/// Open `url` when it names a cloud store (`s3://`, `gs://`, `az://`, `abfs://`, `abfss://`);
/// `None` for any other URL.
pub(crate) fn open(url: &str, options: &BTreeMap<String, String>, env: &Env) -> Result<Option<Opened>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(None);
    };
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.to_string();
    let (store, remote): (Arc<dyn ObjectStore>, Remote) = match scheme {
        "s3" => {
            let (b, remote) = s3(authority, options, env)?;
            (Arc::new(b.build().map_err(|e| e.to_string())?), remote)
        }
        "gs" => {
            let (b, remote) = gcs(authority, options, env)?;
            (Arc::new(b.build().map_err(|e| e.to_string())?), remote)
        }
        "az" | "abfs" | "abfss" => {
            let (b, remote) = azure(scheme, authority, options, env)?;
            (Arc::new(b.build().map_err(|e| e.to_string())?), remote)
        }
        _ => return Ok(None),
    };
    Ok(Some(Opened { store, prefix, remote }))
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

/// Read a shared file: `Ok(None)` when it does not exist.
fn read_shared(path: &FsPath) -> Result<Option<BTreeMap<String, Section>>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse_aws_ini(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn load_profile(name: &str, env: &Env) -> Result<Profile, String> {
    let home = env.home();
    let file = |var: &str, rel: &str| {
        env.get(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(rel)))
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
    for (i, (path, sections)) in sources.into_iter().enumerate() {
        let Some(path) = path else {
            p.searched.push(format!(
                "{} (HOME is not set)",
                ["~/.aws/credentials", "~/.aws/config"][i]
            ));
            continue;
        };
        let note = match read_shared(&path)? {
            None => "no such file",
            Some(all) => {
                let hit = sections.iter().find_map(|s| all.get(s));
                if i == 1 {
                    config_sections = all.clone();
                }
                match hit {
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
                }
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

/// Settings a profile may hold that this reader does not follow: credentials must then come
/// from elsewhere (`aws configure export-credentials` prints them as variables).
const UNSUPPORTED_PROFILE_KEYS: [&str; 5] = [
    "role_arn",
    "source_profile",
    "credential_process",
    "sso_session",
    "sso_start_url",
];

fn s3(bucket: &str, options: &BTreeMap<String, String>, env: &Env) -> Result<(AmazonS3Builder, Remote), String> {
    if bucket.is_empty() {
        return Err("no bucket name".into());
    }
    // As AmazonS3Builder::from_env, from the given environment.
    let mut b = AmazonS3Builder::new();
    let mut vars: Vec<(&str, &str)> = env.with_prefix("AWS_").collect();
    // in name order, so that of two names for one setting the same one always wins
    // (AWS_ENDPOINT_URL over AWS_ENDPOINT); AWS_DEFAULT_REGION never overrides AWS_REGION
    vars.sort();
    for (k, v) in vars {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    if let Some(v) = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        && env.get("AWS_METADATA_ENDPOINT").is_none()
    {
        b = b.with_config(AmazonS3ConfigKey::MetadataEndpoint, v);
    }
    let mut profile_name = None;
    for (k, v) in options {
        if k == "profile" || k == "aws_profile" {
            profile_name = Some(v.clone());
            continue;
        }
        let key: AmazonS3ConfigKey = k.parse().map_err(|_| format!("unknown S3 option {k:?}"))?;
        b = b.with_config(key, v);
    }
    let explicit_profile = profile_name.is_some() || env.get("AWS_PROFILE").is_some();
    let profile_name = profile_name
        .or_else(|| env.get("AWS_PROFILE").map(str::to_string))
        .unwrap_or_else(|| "default".to_string());
    let profile = load_profile(&profile_name, env)?;
    if explicit_profile && !profile.found {
        return Err(format!(
            "AWS profile {profile_name:?} not found (looked in: {})",
            profile.searched.join(", ")
        ));
    }
    let get = |b: &AmazonS3Builder, k: AmazonS3ConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
    if get(&b, AmazonS3ConfigKey::Region).is_none()
        && let Some(r) = profile.settings.get("region")
    {
        b = b.with_region(r);
    }
    if get(&b, AmazonS3ConfigKey::S3Endpoint).is_none()
        && get(&b, AmazonS3ConfigKey::Endpoint).is_none()
        && let Some(e) = profile
            .services
            .get("s3.endpoint_url")
            .or_else(|| profile.settings.get("endpoint_url"))
    {
        b = b.with_endpoint(e);
    }
    let endpoint = get(&b, AmazonS3ConfigKey::S3Endpoint).or_else(|| get(&b, AmazonS3ConfigKey::Endpoint));
    if endpoint.as_deref().is_some_and(is_http) {
        b = b.with_allow_http(true);
    }
    let region = get(&b, AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let remote = Remote {
        kind: "bucket",
        name: bucket.to_string(),
        endpoint: endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com")),
    };

    let has = |b: &AmazonS3Builder, k: AmazonS3ConfigKey| get(b, k).is_some();
    let given = has(&b, AmazonS3ConfigKey::AccessKeyId)
        || has(&b, AmazonS3ConfigKey::SecretAccessKey)
        || get(&b, AmazonS3ConfigKey::SkipSignature).is_some_and(|v| truthy(&v))
        || (has(&b, AmazonS3ConfigKey::WebIdentityTokenFile) && has(&b, AmazonS3ConfigKey::RoleArn))
        || has(&b, AmazonS3ConfigKey::ContainerCredentialsRelativeUri)
        || (has(&b, AmazonS3ConfigKey::ContainerCredentialsFullUri)
            && has(&b, AmazonS3ConfigKey::ContainerAuthorizationTokenFile));
    if given {
        return Ok((b.with_bucket_name(bucket), remote));
    }
    let id = profile.settings.get("aws_access_key_id");
    let secret = profile.settings.get("aws_secret_access_key");
    match (id, secret) {
        (Some(id), Some(secret)) => {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(t) = profile.settings.get("aws_session_token") {
                b = b.with_token(t);
            }
            return Ok((b.with_bucket_name(bucket), remote));
        }
        (Some(_), None) | (None, Some(_)) => {
            let (has, lacks) = match id {
                Some(_) => ("aws_access_key_id", "aws_secret_access_key"),
                None => ("aws_secret_access_key", "aws_access_key_id"),
            };
            return Err(format!("AWS profile {profile_name:?} has {has} but no {lacks}"));
        }
        (None, None) => {}
    }
    let unsupported: Vec<&str> = UNSUPPORTED_PROFILE_KEYS
        .iter()
        .copied()
        .filter(|k| profile.settings.contains_key(*k))
        .collect();
    let imds = if env.truthy("AWS_EC2_METADATA_DISABLED") {
        Err("instance metadata (AWS_EC2_METADATA_DISABLED is set)".to_string())
    } else if has(&b, AmazonS3ConfigKey::MetadataEndpoint) || env.is_ec2() {
        Ok(())
    } else {
        Err("instance metadata (skipped: not an EC2 instance; AWS_EC2_METADATA_SERVICE_ENDPOINT asks for it)".into())
    };
    match imds {
        Ok(()) => Ok((b.with_bucket_name(bucket), remote)),
        Err(imds) => {
            let mut looked = vec![
                "environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and web identity, container credentials)"
                    .to_string(),
            ];
            looked.extend(profile.searched.iter().cloned());
            looked.push(imds);
            let mut message = format!("no S3 credentials found (looked in: {})", looked.join(", "));
            if !unsupported.is_empty() {
                message.push_str(&format!(
                    "; profile {profile_name:?} uses {}, which stratalake does not follow: export its \
                     credentials (`aws configure export-credentials --profile {profile_name} --format env`)",
                    unsupported.join(", ")
                ));
            }
            let b = b.with_credentials(NoCredentials::provider("S3", message));
            Ok((b.with_bucket_name(bucket), remote))
        }
    }
}

fn is_http(endpoint: &str) -> bool {
    endpoint.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

fn gcs(
    bucket: &str,
    options: &BTreeMap<String, String>,
    env: &Env,
) -> Result<(GoogleCloudStorageBuilder, Remote), String> {
    if bucket.is_empty() {
        return Err("no bucket name".into());
    }
    let mut b = GoogleCloudStorageBuilder::new();
    for (k, v) in env.with_prefix("GOOGLE_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<GoogleConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    for (k, v) in options {
        let key: GoogleConfigKey = k.parse().map_err(|_| format!("unknown GCS option {k:?}"))?;
        b = b.with_config(key, v);
    }
    let get = |b: &GoogleCloudStorageBuilder, k: GoogleConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
    let base = get(&b, GoogleConfigKey::BaseUrl);
    if base.as_deref().is_some_and(is_http) {
        b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
    }
    let remote = Remote {
        kind: "bucket",
        name: bucket.to_string(),
        endpoint: base.unwrap_or_else(|| "https://storage.googleapis.com".into()),
    };
    let adc = env
        .home()
        .map(|h| h.join(".config/gcloud/application_default_credentials.json"));
    let given = get(&b, GoogleConfigKey::ServiceAccount).is_some()
        || get(&b, GoogleConfigKey::ServiceAccountKey).is_some()
        || get(&b, GoogleConfigKey::ApplicationCredentials).is_some()
        || get(&b, GoogleConfigKey::SkipSignature).is_some_and(|v| truthy(&v))
        || adc.as_ref().is_some_and(|p| p.exists());
    let metadata = (env.get("GCE_METADATA_HOST").is_some() || env.get("GCE_METADATA_ROOT").is_some() || env.is_gce())
        && !env.truthy("NO_GCE_CHECK");
    if !given && !metadata {
        let adc = adc.map_or("~/.config/gcloud/application_default_credentials.json".into(), |p| {
            p.display().to_string()
        });
        let message = format!(
            "no GCS credentials found (looked in: options service_account/service_account_key, environment \
             GOOGLE_SERVICE_ACCOUNT, GOOGLE_SERVICE_ACCOUNT_KEY, GOOGLE_APPLICATION_CREDENTIALS, {adc} (no such \
             file), instance metadata (skipped: not a Compute Engine instance; GCE_METADATA_HOST asks for it))"
        );
        b = b.with_credentials(NoCredentials::provider("GCS", message));
    }
    Ok((b.with_bucket_name(bucket), remote))
}

fn azure(
    scheme: &str,
    authority: &str,
    options: &BTreeMap<String, String>,
    env: &Env,
) -> Result<(MicrosoftAzureBuilder, Remote), String> {
    let (container, account) = match authority.split_once('@') {
        Some((c, host)) => (c, host.split('.').next().filter(|a| !a.is_empty())),
        None => (authority, None),
    };
    if container.is_empty() {
        return Err("no container name".into());
    }
    let mut b = MicrosoftAzureBuilder::new();
    for (k, v) in env.with_prefix("AZURE_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AzureConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    if let Some(v) = env.get("IDENTITY_ENDPOINT") {
        b = b.with_config(AzureConfigKey::MsiEndpoint, v);
    }
    for (k, v) in options {
        let key: AzureConfigKey = k.parse().map_err(|_| format!("unknown Azure option {k:?}"))?;
        b = b.with_config(key, v);
    }
    // container and account as the URL gives them (object_store parses it)
    b = b.with_url(format!("{scheme}://{authority}"));
    let get = |b: &MicrosoftAzureBuilder, k: AzureConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
    let emulator = get(&b, AzureConfigKey::UseEmulator).is_some_and(|v| truthy(&v));
    let account = account
        .map(str::to_string)
        .or_else(|| get(&b, AzureConfigKey::AccountName));
    let endpoint = get(&b, AzureConfigKey::Endpoint);
    if endpoint.as_deref().is_some_and(is_http) {
        b = b.with_config(AzureConfigKey::Client(ClientConfigKey::AllowHttp), "true");
    }
    let endpoint = if emulator {
        let base = env.get("AZURITE_BLOB_STORAGE_URL").unwrap_or("http://127.0.0.1:10000");
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
        endpoint,
    };
    let has = |b: &MicrosoftAzureBuilder, k: AzureConfigKey| get(b, k).is_some();
    let given = emulator
        || has(&b, AzureConfigKey::AccessKey)
        || has(&b, AzureConfigKey::SasKey)
        || has(&b, AzureConfigKey::Token)
        || (has(&b, AzureConfigKey::ClientId)
            && has(&b, AzureConfigKey::AuthorityId)
            && (has(&b, AzureConfigKey::ClientSecret) || has(&b, AzureConfigKey::FederatedTokenFile)))
        || has(&b, AzureConfigKey::FabricTokenServiceUrl)
        || get(&b, AzureConfigKey::UseAzureCli).is_some_and(|v| truthy(&v))
        || get(&b, AzureConfigKey::SkipSignature).is_some_and(|v| truthy(&v));
    let metadata = has(&b, AzureConfigKey::MsiEndpoint) || env.is_azure_vm();
    if !given && !metadata {
        let message = "no Azure credentials found (looked in: options and environment AZURE_STORAGE_ACCOUNT_KEY, \
                       AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_TOKEN, AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or \
                       AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID, AZURE_USE_AZURE_CLI, managed identity \
                       (skipped: not an Azure VM; IDENTITY_ENDPOINT asks for it))"
            .to_string();
        b = b.with_credentials(NoCredentials::provider("Azure", message));
    }
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
        s3("b", &opts, &Env::new(vars, sys.path()))
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
            (
                vec![("HOME", h), ("AWS_PROFILE", "assumed")],
                "export-credentials --profile assumed",
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
    }

    #[test]
    fn instance_metadata_only_on_an_instance_or_when_asked() {
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let ec2 = |vars: &[(&str, &str)]| {
            let (b, _) = s3("b", &BTreeMap::new(), &Env::new(vars, sys.path())).unwrap();
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
        assert!(open("gs://b", &[("nope".to_string(), "1".to_string())].into(), &env).is_err());
        assert!(open("ftp://x/y", &none, &env).unwrap().is_none());
    }

    #[tokio::test]
    async fn gcs_and_azure_without_credentials_fail_at_once() {
        use object_store::ObjectStoreExt;
        let sys = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let env = Env::new(&[("HOME", home.path().to_str().unwrap())], sys.path());
        let opts: BTreeMap<String, String> = [("account_name".to_string(), "acct".to_string())].into();
        for (url, expect) in [("gs://b/p", "no GCS credentials"), ("az://c/p", "no Azure credentials")] {
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
}
