//! Object stores resolved on first use: `s3://bucket` is configured from the standard AWS
//! environment variables the first time a table, `CREATE EXTERNAL TABLE` or `COPY … TO`
//! touches that bucket, so SQL can name any bucket without registration steps.
//!
//! Read by `AmazonS3Builder::from_env`: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

/// An [`ObjectStoreRegistry`] that builds S3 stores from the environment on demand and keeps
/// everything else (local files, explicitly registered stores) as DataFusion does.
#[derive(Debug, Default)]
pub struct EnvObjectStoreRegistry {
    inner: DefaultObjectStoreRegistry,
}

impl EnvObjectStoreRegistry {
    /// A registry with the local file system registered, as DataFusion's default has.
    pub fn new() -> Self {
        Self::default()
    }
}

fn s3_from_env(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "'{url}' names no bucket (expected s3://BUCKET/PATH)"
        ))
    })?;
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| {
            DataFusionError::Plan(format!("cannot configure S3 for bucket '{bucket}': {e}"))
        })?;
    Ok(Arc::new(store))
}

impl ObjectStoreRegistry for EnvObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match self.inner.get_store(url) {
            Ok(store) => Ok(store),
            Err(e) => match url.scheme() {
                "s3" | "s3a" => {
                    let store = s3_from_env(url)?;
                    self.inner.register_store(url, Arc::clone(&store));
                    Ok(store)
                }
                _ => Err(e),
            },
        }
    }
}

/// Environment variables whose values are secrets: never printed.
const SECRET_VARS: [&str; 5] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "HQFLOW_API_KEY",
    "OPENAI_API_KEY",
];

/// Replaces any credential from the environment that appears in `message` with `***`, and
/// the token of any `Bearer TOKEN` (an `Authorization` header's value, whatever key it holds).
/// S3 error bodies can echo the access key id and HTTP servers the header they got; this is
/// the last line of defence before a message reaches a terminal or a log.
pub fn redact_secrets(message: &str) -> String {
    let mut out = redact_bearer_tokens(message);
    for var in SECRET_VARS {
        if let Ok(secret) = std::env::var(var) {
            // Very short values would redact ordinary words; real credentials are long.
            if secret.len() >= 8 {
                out = out.replace(&secret, "***");
            }
        }
    }
    out
}

/// `Bearer TOKEN` → `Bearer ***` (case-insensitive; the token runs to the next whitespace,
/// quote, comma or bracket).
fn redact_bearer_tokens(message: &str) -> String {
    const WORD: &str = "bearer ";
    let lower = message.to_ascii_lowercase();
    let mut out = String::with_capacity(message.len());
    let mut rest = 0;
    while let Some(found) = lower[rest..].find(WORD) {
        let token_start = rest + found + WORD.len();
        let token_len = message[token_start..]
            .find(|c: char| c.is_whitespace() || "\"',;)]}\\".contains(c))
            .unwrap_or(message.len() - token_start);
        out.push_str(&message[rest..token_start]);
        if token_len > 0 && &message[token_start..token_start + token_len] != "***" {
            out.push_str("***");
        } else {
            out.push_str(&message[token_start..token_start + token_len]);
        }
        rest = token_start + token_len;
    }
    out.push_str(&message[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_redacted_whatever_key_they_hold() {
        assert_eq!(
            redact_secrets(r#"401: {"message": "invalid api key: Bearer sk-abc123XYZ"}"#),
            r#"401: {"message": "invalid api key: Bearer ***"}"#
        );
        assert_eq!(
            redact_secrets("authorization: bearer tok.en-1, next"),
            "authorization: bearer ***, next"
        );
        assert_eq!(redact_secrets("Bearer"), "Bearer");
        assert_eq!(redact_secrets("no secrets here"), "no secrets here");
    }
}
