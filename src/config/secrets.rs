//! The secret files a config names, read at daemon start (never by `render`): a relative
//! path is looked up in systemd's `$CREDENTIALS_DIRECTORY`, where `LoadCredential=` puts
//! them. What is read never shows up in `Debug` output.

use super::{Config, ConfigError, S3Config};
use std::path::{Path, PathBuf};

/// What the daemon reads from the secret files a config names.
pub struct Secrets {
    pub engine_password: Option<String>,
    pub api_token: Option<String>,
    /// The log store's access key id and secret key, with `[logs]`.
    pub logs_s3: Option<S3Keys>,
    /// The backup store's keys, with `[backups]` (the log store's when it is shared).
    pub backups_s3: Option<S3Keys>,
    /// `[backups] age_recipients_file`'s text (public keys).
    pub backups_age_recipients: Option<String>,
    /// `[backups] age_identity_file`'s text (a secret key).
    pub backups_age_identity: Option<String>,
    /// `[backups] restore_password_file`'s text.
    pub backups_restore_password: Option<String>,
    /// `[safety] reader_password_file`'s text.
    pub safety_reader_password: Option<String>,
}

/// An S3 access key pair, read from files; `Debug` shows neither half.
#[derive(Clone)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Keys(<redacted>)")
    }
}

/// One secret file's text, without its trailing newline. A relative path is looked up
/// in systemd's `$CREDENTIALS_DIRECTORY`. `file` and `key` name it in errors.
fn read_secret(file: &Path, key: &str, path: &Path) -> Result<String, ConfigError> {
    let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => Path::new(&dir).join(path),
        _ => path.to_owned(),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
        file: file.to_owned(),
        key: key.into(),
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(ConfigError::Invalid {
            file: file.to_owned(),
            key: key.into(),
            message: format!("{} is empty", path.display()),
        });
    }
    Ok(secret)
}

impl Config {
    /// Only the API token (the upgrade agent needs no other secret).
    pub fn read_api_token(&self, file: &Path) -> Result<Option<String>, ConfigError> {
        self.api
            .token_file
            .as_deref()
            .map(|p| read_secret(file, "api.token_file", p))
            .transpose()
    }

    /// Reads the secret files the config names. A relative path is looked up in systemd's
    /// `$CREDENTIALS_DIRECTORY`, where `LoadCredential=` puts them.
    pub fn read_secrets(&self, file: &Path) -> Result<Secrets, ConfigError> {
        let read = |key: &str, path: &Path| read_secret(file, key, path);
        let optional =
            |key: &str, path: &Option<PathBuf>| path.as_deref().map(|p| read(key, p)).transpose();
        let keys = |table: &str, s3: &S3Config| -> Result<S3Keys, ConfigError> {
            Ok(S3Keys {
                access_key_id: read(
                    &format!("{table}.access_key_id_file"),
                    &s3.access_key_id_file,
                )?,
                secret_access_key: read(
                    &format!("{table}.secret_access_key_file"),
                    &s3.secret_access_key_file,
                )?,
            })
        };
        let logs_s3 = self
            .logs
            .as_ref()
            .map(|l| keys("logs.s3", &l.s3))
            .transpose()?;
        let backups_s3 = match self.backups.as_ref().map(|b| b.s3.as_ref()) {
            Some(Some(s3)) => Some(keys("backups.s3", s3)?),
            // Sharing the log store, with its keys.
            Some(None) => logs_s3.clone(),
            None => None,
        };
        let backups = self.backups.as_ref();
        let recipients = backups.and_then(|b| b.age_recipients_file.clone());
        let identity = backups.and_then(|b| b.age_identity_file.clone());
        let restore = backups.and_then(|b| b.restore_password_file.clone());
        Ok(Secrets {
            backups_age_recipients: optional("backups.age_recipients_file", &recipients)?,
            backups_age_identity: optional("backups.age_identity_file", &identity)?,
            backups_restore_password: optional("backups.restore_password_file", &restore)?,
            safety_reader_password: optional(
                "safety.reader_password_file",
                &self.safety.reader_password_file,
            )?,
            engine_password: optional("engine.password_file", &self.engine.password_file)?,
            api_token: optional("api.token_file", &self.api.token_file)?,
            logs_s3,
            backups_s3,
        })
    }
}
