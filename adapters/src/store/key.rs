//! The store's encryption key: where it comes from, how it is created, and how it is kept in memory.
//!
//! [`StoreKey`] holds the 32 bytes of an XChaCha20-Poly1305 key; it zeroes them when dropped and prints
//! as `StoreKey(***)`. [`KeySource`] says where [`SledStore::open`](crate::SledStore::open) gets it:
//!
//! - [`KeySource::EnvOrFile`] (the default): the `WARDEN_KEY` environment variable if it is set, else the
//!   key file beside the database (`<db path>.key`, see [`default_key_file`]), created on first run.
//! - [`KeySource::Env`]: `WARDEN_KEY` only; unset is an error.
//! - [`KeySource::File`]: a key file at a given path, created on first run.
//! - [`KeySource::Bytes`]: the key itself (tests, or an application with its own secret manager).
//!
//! `WARDEN_KEY` and key files hold the same text: the base64 of 32 random bytes (standard alphabet,
//! padding optional), e.g. `head -c32 /dev/urandom | base64`. A key file is created with mode 0600 and
//! `create_new` (two processes never both create one); an existing key file that group or others may
//! read, or that does not hold exactly 32 bytes, is refused with a [`StoreError::Key`] that names the file
//! and the problem. Errors never contain key material.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::Generate;
use warden_engine::StoreError;
use zeroize::{Zeroize, Zeroizing};

/// The environment variable that holds the key (base64 of 32 bytes).
pub const KEY_ENV_VAR: &str = "WARDEN_KEY";

/// Length of a store key, in bytes.
pub const KEY_LEN: usize = 32;

/// Largest key file accepted, in bytes (a key file is 45 bytes; anything much larger is not one).
const KEY_FILE_MAX_BYTES: u64 = 1024;

/// The standard base64 alphabet, accepting input with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A 32-byte store key. Zeroed on drop; Debug prints `StoreKey(***)`.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; KEY_LEN]>);

impl StoreKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> StoreKey {
        StoreKey(Zeroizing::new(bytes))
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<StoreKey, StoreError> {
        let mut bytes = <[u8; KEY_LEN]>::try_generate()
            .map_err(|e| StoreError::Key { detail: format!("the system random generator failed: {e}") })?;
        let key = StoreKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Reads a key from its text form (base64 of 32 bytes, surrounding whitespace ignored). `origin` names
    /// where the text came from (`WARDEN_KEY`, `key file /var/lib/warden/store.key`) for the error message.
    pub fn from_base64(text: &str, origin: &str) -> Result<StoreKey, StoreError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StoreError::Key { detail: format!("{origin} is empty; it must hold the base64 of 32 bytes") });
        }
        // The decode error is not quoted: it names a byte of the key and its offset.
        let bytes = Zeroizing::new(BASE64.decode(text).map_err(|_| StoreError::Key {
            detail: format!(
                "{origin} is not base64 (standard alphabet); it must hold the base64 of 32 random bytes, e.g. the \
                 output of `head -c32 /dev/urandom | base64`"
            ),
        })?);
        let Ok(array) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) else {
            return Err(StoreError::Key {
                detail: format!("{origin} decodes to {} bytes; a store key is exactly {KEY_LEN} bytes", bytes.len()),
            });
        };
        Ok(StoreKey::from_bytes(array))
    }

    /// The key's text form (base64, padded), as written to key files.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0.as_slice()))
    }

    /// The key bytes, for the cipher.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(***)")
    }
}

/// Where the store's key comes from. Debug never shows key bytes; [`KeySource::Bytes`] is zeroed on drop.
#[derive(Clone, Default)]
pub enum KeySource {
    /// `WARDEN_KEY` if it is set (a malformed value is an error, not a fall-back), else the key file
    /// [`default_key_file`] beside the database, created on first run.
    #[default]
    EnvOrFile,
    /// `WARDEN_KEY` only; an unset variable is an error.
    Env,
    /// The key file at this path, created (mode 0600) if it does not exist.
    File(PathBuf),
    /// This key.
    Bytes([u8; KEY_LEN]),
}

impl KeySource {
    /// Finds (or creates) the key for the database at `db_path`, reading `WARDEN_KEY` from the process
    /// environment when the source says so.
    pub fn resolve(&self, db_path: &Path) -> Result<StoreKey, StoreError> {
        let env_value = match self {
            KeySource::EnvOrFile | KeySource::Env => std::env::var_os(KEY_ENV_VAR),
            KeySource::File(_) | KeySource::Bytes(_) => None,
        };
        self.resolve_with_env(db_path, env_value)
    }

    /// As [`KeySource::resolve`], with the value of `WARDEN_KEY` given (`None`: unset). Tests use this to
    /// avoid touching the process environment.
    pub fn resolve_with_env(&self, db_path: &Path, env_value: Option<OsString>) -> Result<StoreKey, StoreError> {
        match (self, env_value) {
            (KeySource::EnvOrFile | KeySource::Env, Some(value)) => parse_env_value(value),
            (KeySource::EnvOrFile, None) => load_or_create_key_file(&default_key_file(db_path)),
            (KeySource::Env, None) => Err(StoreError::Key {
                detail: format!("{KEY_ENV_VAR} is not set; set it to the base64 of 32 random bytes"),
            }),
            (KeySource::File(path), _) => load_or_create_key_file(path),
            (KeySource::Bytes(bytes), _) => Ok(StoreKey::from_bytes(*bytes)),
        }
    }
}

impl Drop for KeySource {
    fn drop(&mut self) {
        if let KeySource::Bytes(bytes) = self {
            bytes.zeroize();
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::EnvOrFile => f.write_str("EnvOrFile"),
            KeySource::Env => f.write_str("Env"),
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            KeySource::Bytes(_) => f.write_str("Bytes(***)"),
        }
    }
}

/// Parses the value of `WARDEN_KEY`.
pub fn parse_env_value(value: OsString) -> Result<StoreKey, StoreError> {
    let text = Zeroizing::new(value.into_string().map_err(|_| StoreError::Key {
        detail: format!("{KEY_ENV_VAR} is not valid UTF-8; it must hold the base64 of 32 bytes"),
    })?);
    StoreKey::from_base64(&text, KEY_ENV_VAR)
}

/// The key file used for the database at `db_path` when no other source is given: the database
/// directory's path with `.key` appended (`/var/lib/warden/store` → `/var/lib/warden/store.key`), so the
/// key sits beside the data, not in it (a copy of the database directory alone does not carry its key),
/// and deleting the directory to rebuild the store keeps the key. A path without a final component (`.`,
/// `/`) uses `warden.key` inside it.
pub fn default_key_file(db_path: &Path) -> PathBuf {
    match db_path.file_name() {
        Some(name) => {
            let mut file_name = name.to_os_string();
            file_name.push(".key");
            db_path.with_file_name(file_name)
        }
        None => db_path.join("warden.key"),
    }
}

/// Reads the key file at `path`, or creates it with a new random key (mode 0600) if it does not exist.
pub fn load_or_create_key_file(path: &Path) -> Result<StoreKey, StoreError> {
    match create_key_file(path) {
        Ok(key) => Ok(key),
        // Someone (an earlier run, or a concurrent one) created it: read theirs.
        Err(CreateError::Exists) => read_key_file(path),
        Err(CreateError::Failed(error)) => Err(error),
    }
}

/// Why a key file was not created.
enum CreateError {
    /// It already exists.
    Exists,
    /// Anything else.
    Failed(StoreError),
}

fn create_key_file(path: &Path) -> Result<StoreKey, CreateError> {
    let failed = |what: &str, e: std::io::Error| {
        CreateError::Failed(StoreError::Key { detail: format!("could not {what} key file {}: {e}", path.display()) })
    };
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(CreateError::Exists),
        Err(e) => return Err(failed("create", e)),
    };
    let key = StoreKey::generate().map_err(CreateError::Failed)?;
    let mut text = key.to_base64();
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(|e| failed("write", e))?;
    file.sync_all().map_err(|e| failed("sync", e))?;
    // Make the new directory entry durable too: losing the key loses every record.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
    tracing::info!(path = %path.display(), "created a new store key file (mode 0600)");
    Ok(key)
}

fn read_key_file(path: &Path) -> Result<StoreKey, StoreError> {
    let problem = |detail: String| StoreError::Key { detail: format!("key file {}: {detail}", path.display()) };
    let metadata = fs::metadata(path).map_err(|e| problem(format!("cannot read its metadata: {e}")))?;
    if !metadata.is_file() {
        return Err(problem("is not a regular file".to_owned()));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(problem(format!(
            "has mode {mode:04o}; group and others must have no access (run `chmod 600 {}`)",
            path.display()
        )));
    }
    if metadata.len() > KEY_FILE_MAX_BYTES {
        return Err(problem(format!(
            "is {} bytes long; a key file holds one line, the base64 of {KEY_LEN} bytes",
            metadata.len()
        )));
    }
    let mut text = Zeroizing::new(String::new());
    File::open(path)
        .and_then(|file| file.take(KEY_FILE_MAX_BYTES).read_to_string(&mut text))
        .map_err(|e| problem(format!("cannot be read: {e}")))?;
    StoreKey::from_base64(&text, &format!("key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(result: Result<StoreKey, StoreError>) -> String {
        match result {
            Err(StoreError::Key { detail }) => detail,
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn env_values_are_parsed_with_clear_errors() {
        let good = StoreKey::from_bytes([7; 32]).to_base64();
        let key = parse_env_value(OsString::from(format!("  {}\n", good.as_str()))).expect("valid key");
        assert_eq!(key.bytes(), &[7; 32]);
        let unpadded = good.trim_end_matches('=').to_owned();
        assert!(parse_env_value(OsString::from(unpadded)).is_ok());

        let d = detail(parse_env_value(OsString::from("not base64 at all!")));
        assert!(d.contains("WARDEN_KEY is not base64"), "{d}");
        let d = detail(parse_env_value(OsString::from(BASE64.encode([1u8; 16]))));
        assert!(d.contains("decodes to 16 bytes") && d.contains("exactly 32"), "{d}");
        let d = detail(parse_env_value(OsString::from("   ")));
        assert!(d.contains("WARDEN_KEY is empty"), "{d}");
    }

    #[test]
    fn sources_pick_env_then_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("store");
        let env_key = StoreKey::from_bytes([9; 32]).to_base64();
        let from_env =
            KeySource::EnvOrFile.resolve_with_env(&db, Some(OsString::from(env_key.as_str()))).expect("env key");
        assert_eq!(from_env.bytes(), &[9; 32]);
        assert!(!default_key_file(&db).exists(), "an env key must not create a key file");

        let created = KeySource::EnvOrFile.resolve_with_env(&db, None).expect("created key");
        let again = KeySource::EnvOrFile.resolve_with_env(&db, None).expect("read key");
        assert_eq!(created.bytes(), again.bytes());
        assert_eq!(default_key_file(&db), dir.path().join("store.key"));

        let d = detail(KeySource::Env.resolve_with_env(&db, None));
        assert!(d.contains("WARDEN_KEY is not set"), "{d}");
        let d = detail(KeySource::EnvOrFile.resolve_with_env(&db, Some(OsString::from("x"))));
        assert!(d.contains("WARDEN_KEY"), "a malformed env key is an error, not a fall-back: {d}");
    }

    #[test]
    fn debug_hides_keys() {
        assert_eq!(format!("{:?}", StoreKey::from_bytes([1; 32])), "StoreKey(***)");
        assert_eq!(format!("{:?}", KeySource::Bytes([1; 32])), "Bytes(***)");
    }

    #[test]
    fn default_key_file_sits_beside_the_database() {
        assert_eq!(default_key_file(Path::new("/var/lib/warden/store")), Path::new("/var/lib/warden/store.key"));
        assert_eq!(default_key_file(Path::new("/var/lib/warden/store/")), Path::new("/var/lib/warden/store.key"));
        assert_eq!(default_key_file(Path::new("/")), Path::new("/warden.key"));
    }
}
