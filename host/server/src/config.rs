//! The operator's configuration for `tether serve`, in one TOML file (`--config FILE`):
//! where to listen, the journal, the workflows, limits, the secrets the server holds, cron
//! schedules and webhooks. Flags given on the command line win over the file.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! db = "/var/lib/tether/journal.db"
//! workflows = "workflows"          # relative to this file
//! concurrency = 32
//! grace = "30s"
//!
//! [secrets]                        # put into the server's environment, for grants
//! PAYMENTS_API_KEY = { file = "/run/secrets/payments" }
//! HOOK_SECRET = { env = "SUPPORT_HOOK_SECRET" }
//!
//! [[schedules]]
//! name = "nightly-digest"
//! workflow = "research"
//! cron = "0 2 * * *"
//! timezone = "Europe/Paris"
//! overlap = "skip"
//! input = { topic = "refund trends" }
//!
//! [[webhooks]]
//! name = "support-mail"
//! workflow = "support-triage"
//! secret = "HOOK_SECRET"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tether_app::schedule::ScheduleSpec;

/// The configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The address to listen on.
    pub listen: Option<String>,
    /// The journal's URL or path.
    pub db: Option<String>,
    /// Connections kept open to a PostgreSQL journal.
    pub db_pool: Option<u32>,
    /// The directory of workflow files.
    pub workflows: Option<PathBuf>,
    /// Runs executing at once.
    pub concurrency: Option<usize>,
    /// How long running attempts get to end on SIGTERM.
    pub grace: Option<String>,
    /// Secrets the server holds, by the environment name grants use.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Cron schedules.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Webhooks (`POST /hooks/NAME`).
    #[serde(default)]
    pub webhooks: Vec<WebhookSpec>,
}

/// Where a secret's value is read from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Another environment variable of the server.
    pub env: Option<String>,
    /// A file (its content, without a trailing newline).
    pub file: Option<PathBuf>,
}

/// A webhook: a signed POST that starts a run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Its name: it is posted to `/hooks/NAME`.
    pub name: String,
    /// The workflow each delivery starts.
    pub workflow: String,
    /// The secret (a `[secrets]` name or an environment variable) that signs deliveries.
    pub secret: String,
    /// The header holding `sha256=HEX`, the HMAC-SHA256 of the body [default: X-Tether-Signature].
    #[serde(default)]
    pub signature_header: Option<String>,
    /// The header naming a delivery: a delivery seen before starts nothing new
    /// [default: X-Tether-Delivery].
    #[serde(default)]
    pub delivery_header: Option<String>,
}

impl WebhookSpec {
    /// The signature header's name, lower case.
    pub fn signature_header(&self) -> String {
        self.signature_header.as_deref().unwrap_or("x-tether-signature").to_ascii_lowercase()
    }

    /// The delivery header's name, lower case.
    pub fn delivery_header(&self) -> String {
        self.delivery_header.as_deref().unwrap_or("x-tether-delivery").to_ascii_lowercase()
    }
}

impl ServeConfig {
    /// Reads and checks the file; relative paths in it are made relative to its directory.
    pub fn load(path: &Path) -> Result<ServeConfig, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
        let mut config: ServeConfig = toml::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(dir) = &config.workflows {
            config.workflows = Some(base.join(dir));
        }
        for source in config.secrets.values_mut() {
            if let Some(file) = &source.file {
                source.file = Some(base.join(file));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for hook in &config.webhooks {
            if hook.name.is_empty() || !hook.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
                return Err(format!("{shown}: webhook `{}`: name it with letters, digits, `-` or `_`", hook.name));
            }
            if !names.insert(hook.name.clone()) {
                return Err(format!("{shown}: two webhooks are named `{}`", hook.name));
            }
        }
        Ok(config)
    }

    /// Each secret's value, read now; an error names the secret and where it was looked for.
    pub fn secret_values(&self) -> Result<Vec<(String, String)>, String> {
        let mut values = Vec::new();
        for (name, source) in &self.secrets {
            let value = match (&source.env, &source.file) {
                (Some(var), None) => std::env::var(var)
                    .map_err(|_| format!("secret `{name}`: the environment variable `{var}` is not set"))?,
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map_err(|e| format!("secret `{name}`: cannot read {}: {e}", file.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
                _ => return Err(format!("secret `{name}`: give exactly one of `env` or `file`")),
            };
            if value.is_empty() {
                return Err(format!("secret `{name}` is empty"));
            }
            values.push((name.clone(), value));
        }
        Ok(values)
    }
}
