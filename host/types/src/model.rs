//! The operator's model: an OpenAI-compatible chat-completions endpoint that steps asking
//! for it (`model = true`) may call through the host, as the policy's `[model]` table
//! configures it, and what a call costs.
//!
//! ```toml
//! [model]
//! url = "https://api.openai.com/v1"   # or url_env = "TETHER_MODEL_URL"
//! key = "OPENAI_API_KEY"              # a variable of tether's environment (optional)
//! models = ["gpt-4o-mini"]            # the models steps may ask for; the first is the default
//! prices = { "gpt-4o-mini" = { input = 0.15, output = 0.60 } }   # USD per million tokens
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[model]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The API's base URL (`.../v1`); requests go to `{url}/chat/completions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A variable of tether's environment holding the base URL, read at each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// A variable of tether's environment holding the API key, read at each call and
    /// sent as `Authorization: Bearer KEY`; never journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The models steps may ask for; the first is used when a step names none.
    pub models: Vec<String>,
    /// Prices in USD per million tokens, by model: a call's cost is charged to the run's
    /// `cost_usd` from the tokens the provider reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
}

/// What a million tokens cost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million completion tokens.
    pub output: f64,
}

impl ModelConfig {
    /// Its problems, each with what to write instead.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => out.push("give `url` or `url_env`, not both".to_string()),
            (None, None) => {
                out.push("give the API's base URL as `url`, or the variable holding it as `url_env`".into())
            }
            (Some(url), None) => {
                if let Err(e) = base_url(url) {
                    out.push(e);
                }
            }
            (None, Some(var)) if !crate::names::is_env_name(var) => {
                out.push(format!("`url_env`: `{var}` is not an environment variable name"))
            }
            _ => {}
        }
        if let Some(key) = &self.key {
            if !crate::names::is_env_name(key) {
                out.push(format!("`key`: `{key}` is not an environment variable name (the key is read from it)"));
            }
        }
        if self.models.is_empty() {
            out.push("`models` is empty: list the models steps may use, the default first".into());
        }
        for (model, price) in &self.prices {
            if !self.models.contains(model) {
                out.push(format!("`prices` names `{model}`, which is not in `models`"));
            }
            if !(price.input.is_finite() && price.input >= 0.0 && price.output.is_finite() && price.output >= 0.0) {
                out.push(format!("`prices.{model}`: prices are numbers of USD from 0 per million tokens"));
            }
        }
        out
    }

    /// The model a request names, or the default; `Err` says which models may be used.
    pub fn model_for(&self, asked: Option<&str>) -> Result<String, String> {
        match asked {
            None => self.models.first().cloned().ok_or_else(|| "no model is configured".to_string()),
            Some(m) if self.models.iter().any(|x| x == m) => Ok(m.to_string()),
            Some(m) => Err(format!("model `{m}` is not one the operator allows (allowed: {})", self.models.join(", "))),
        }
    }

    /// What `prompt` and `completion` tokens of `model` cost in USD, if it has a price.
    pub fn cost(&self, model: &str, prompt: u64, completion: u64) -> Option<f64> {
        let p = self.prices.get(model)?;
        Some((prompt as f64 * p.input + completion as f64 * p.output) / 1e6)
    }
}

/// A base URL checked: `http` or `https`, a host, no query; returned without a trailing
/// `/`.
pub fn base_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("model url `{url}` is not an http or https URL"))?;
    if rest.is_empty() || rest.starts_with('/') || url.contains(['?', '#', ' ']) {
        return Err(format!("model url `{url}` is not a base URL like https://api.example.com/v1"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Why a model call got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelError {
    /// The step may not use the model, or that model.
    Denied,
    /// The request could not be built or sent as asked.
    InvalidRequest,
    /// The provider could not be reached, timed out, or failed.
    Unavailable,
    /// The provider answered with something that is not a chat completion.
    BadAnswer,
}

impl ModelError {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelError::Denied => "denied",
            ModelError::InvalidRequest => "invalid_request",
            ModelError::Unavailable => "unavailable",
            ModelError::BadAnswer => "bad_answer",
        }
    }
}

/// What a model call got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ModelOutcome {
    /// The provider's chat completion, as it sent it.
    Answer {
        /// Its JSON.
        answer: serde_json::Value,
    },
    /// No answer.
    Failed {
        /// Which error.
        error: ModelError,
        /// Why, for people.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ModelConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_config_names_each_of_its_problems() {
        let ok = config(
            "url = \"http://127.0.0.1:9/v1/\"\nmodels = [\"m\"]\nprices = { m = { input = 1.0, output = 2.0 } }",
        );
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert_eq!(ok.cost("m", 1_000_000, 500_000), Some(2.0));
        assert_eq!(ok.model_for(None).unwrap(), "m");
        assert!(ok.model_for(Some("gpt-5")).unwrap_err().contains("allowed: m"));
        let bad = config("url_env = \"A B\"\nmodels = []\nprices = { x = { input = -1.0, output = 0.0 } }");
        let p = bad.problems().join("\n");
        for expected in ["not an environment variable name", "`models` is empty", "not in `models`", "from 0"] {
            assert!(p.contains(expected), "{expected}: {p}");
        }
        assert!(base_url("ftp://x").is_err() && base_url("https://x/v1?q").is_err());
    }
}
