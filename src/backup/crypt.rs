//! Optional client-side encryption of backups with age: to the X25519 recipients of
//! `[backups] age_recipients_file` (public keys, `age1...`, one per line, `#` comments),
//! so a leaked bucket leaks nothing. Restores need an identity (`AGE-SECRET-KEY-1...`)
//! from `age_identity_file`; only the nodes that restore need one. The identity never
//! shows up in `Debug` output, logs or answers.

use super::BackupError;
use age::x25519::{Identity, Recipient};
use std::fmt;
use std::io::Read;
#[cfg(test)]
use std::io::Write;
use std::str::FromStr;

#[derive(Default)]
pub struct Keys {
    recipients: Vec<Recipient>,
    identities: Vec<Identity>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("recipients", &self.recipients.len())
            .field("identities", &self.identities.len())
            .finish()
    }
}

fn invalid(message: String) -> BackupError {
    BackupError::new("backup_age_key_invalid", message)
}

/// The lines of a key file that are not blank or comments, with their numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

impl Keys {
    /// The keys from the files' texts (`None`: no such file configured).
    pub fn parse(recipients: Option<&str>, identity: Option<&str>) -> Result<Keys, BackupError> {
        let mut keys = Keys::default();
        if let Some(text) = recipients {
            for (n, line) in key_lines(text) {
                keys.recipients.push(Recipient::from_str(line).map_err(|_| {
                    invalid(format!(
                        "backups.age_recipients_file line {n}: not an age X25519 recipient (age1...)"
                    ))
                })?);
            }
            if keys.recipients.is_empty() {
                return Err(invalid(
                    "backups.age_recipients_file names no recipient".into(),
                ));
            }
        }
        if let Some(text) = identity {
            for (n, line) in key_lines(text) {
                // The line itself is secret: the message says only where it is.
                keys.identities.push(Identity::from_str(line).map_err(|_| {
                    invalid(format!(
                        "backups.age_identity_file line {n}: not an age X25519 identity (AGE-SECRET-KEY-1...)"
                    ))
                })?);
            }
            if keys.identities.is_empty() {
                return Err(invalid(
                    "backups.age_identity_file holds no identity".into(),
                ));
            }
        }
        Ok(keys)
    }

    /// Whether backups are encrypted.
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Whether this node can decrypt (restore) encrypted backups.
    pub fn decrypts(&self) -> bool {
        !self.identities.is_empty()
    }

    /// An encryptor to the recipients (a fresh file key), or None when backups are not
    /// encrypted.
    pub fn encryptor(&self) -> Result<Option<age::Encryptor>, BackupError> {
        if !self.encrypts() {
            return Ok(None);
        }
        let recipients = self.recipients.iter().map(|r| r as &dyn age::Recipient);
        age::Encryptor::with_recipients(recipients)
            .map(Some)
            .map_err(|e| BackupError::new("backup_age_key_invalid", e.to_string()))
    }

    /// `out`, wrapped so that what is written to it is encrypted to the recipients.
    #[cfg(test)]
    fn encrypt<W: Write>(&self, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
        self.encryptor()
            .map_err(|e| std::io::Error::other(e.message))?
            .expect("recipients")
            .wrap_output(out)
    }

    /// `input`, decrypted with this node's identities.
    pub fn decrypt<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>, BackupError> {
        let decryptor = age::Decryptor::new(input).map_err(|e| {
            BackupError::new(
                "restore_checksum_mismatch",
                format!("the stored object is not age-encrypted data: {e}"),
            )
        })?;
        let identities = self.identities.iter().map(|i| i as &dyn age::Identity);
        decryptor.decrypt(identities).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => BackupError::new(
                "restore_identity_wrong",
                "the backup was encrypted to none of this node's age identities".into(),
            ),
            e => BackupError::new("restore_checksum_mismatch", format!("age: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn pair() -> (String, String) {
        let id = Identity::generate();
        (
            id.to_public().to_string(),
            id.to_string().expose_secret().to_string(),
        )
    }

    #[test]
    fn round_trip_and_the_wrong_identity() {
        let (public, secret) = pair();
        let keys = Keys::parse(
            Some(&format!("# the fleet's backup key\n\n{public}\n")),
            Some(&format!("{secret}\n")),
        )
        .unwrap();
        assert!(keys.encrypts() && keys.decrypts());
        let mut stored = Vec::new();
        let mut w = keys.encrypt(&mut stored).unwrap();
        w.write_all(b"REDIS0011 the snapshot").unwrap();
        w.finish().unwrap();
        assert!(stored.starts_with(b"age-encryption.org/v1"));
        let mut plain = Vec::new();
        keys.decrypt(&stored[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"REDIS0011 the snapshot");

        let (_, other) = pair();
        let stranger = Keys::parse(None, Some(&other)).unwrap();
        let e = stranger.decrypt(&stored[..]).err().unwrap();
        assert_eq!(e.code, "restore_identity_wrong");
    }

    #[test]
    fn bad_key_files_name_the_line_and_never_show_a_secret() {
        let (_, secret) = pair();
        let e = Keys::parse(Some("age1valid?\n"), None).unwrap_err();
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = Keys::parse(Some("# nothing\n"), None).unwrap_err();
        assert!(e.message.contains("no recipient"), "{}", e.message);
        let broken = format!("# key\n{}x\n", &secret);
        let e = Keys::parse(None, Some(&broken)).unwrap_err();
        assert!(e.message.contains("line 2") && !e.message.contains(&secret[16..]));
        assert!(!format!("{:?}", Keys::parse(None, Some(&secret)).unwrap()).contains("AGE-SECRET"));
    }
}
