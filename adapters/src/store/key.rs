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
//! padding optional), e.g. `head -c32 /dev/urandom | base64`. A key file is created atomically: the key is
//! written to a temporary file (mode 0600) in the same directory, fsync-ed, then hard-linked into place —
//! which fails if the file exists, so two processes never both create one and a crash never leaves an
//! empty or partial key file — and the directory is fsync-ed. An existing key file that group or others
//! may read, that is empty or truncated, or that does not hold exactly 32 bytes, is refused with a
//! [`StoreError::Key`] that names the file, the problem and what to do. Errors never contain key material.
//!
//! [`KeySource::lookup`] finds a key without creating anything and reports a missing key file as
//! [`KeyLookup::MissingFile`]: the store decides whether a new key may be created (a store without records)
//! or whether a lost key must stop the start (a store whose records need the old key).

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

/// Characters of the base64 text of a 32-byte key without padding; shorter text is a truncated key.
const KEY_BASE64_CHARS: usize = 43;

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

/// What [`KeySource::lookup`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyLookup {
    /// A key, and where it came from (`WARDEN_KEY`, `key file /var/lib/warden/store.key`, `the key given
    /// in the store options`), for messages.
    Found {
        /// The key.
        key: StoreKey,
        /// Where it came from.
        origin: String,
    },
    /// The source is a key file that does not exist (yet).
    MissingFile {
        /// The key file's path.
        path: PathBuf,
    },
}

impl KeyLookup {
    /// Where the key comes from, or would come from, for messages.
    pub fn origin(&self) -> String {
        match self {
            KeyLookup::Found { origin, .. } => origin.clone(),
            KeyLookup::MissingFile { path } => key_file_origin(path),
        }
    }
}

/// How a key file is named in messages.
fn key_file_origin(path: &Path) -> String {
    format!("key file {}", path.display())
}

impl KeySource {
    /// Finds (or creates) the key for the database at `db_path`, reading `WARDEN_KEY` from the process
    /// environment when the source says so.
    pub fn resolve(&self, db_path: &Path) -> Result<StoreKey, StoreError> {
        self.resolve_with_env(db_path, self.env_value())
    }

    /// Finds the key for the database at `db_path` without creating anything: a key file that does not
    /// exist is [`KeyLookup::MissingFile`]. Malformed keys (a bad `WARDEN_KEY`, an empty, truncated or
    /// world-readable key file) are errors.
    pub fn lookup(&self, db_path: &Path) -> Result<KeyLookup, StoreError> {
        self.lookup_with_env(db_path, self.env_value())
    }

    /// As [`KeySource::lookup`], with the value of `WARDEN_KEY` given (`None`: unset).
    pub fn lookup_with_env(&self, db_path: &Path, env_value: Option<OsString>) -> Result<KeyLookup, StoreError> {
        let file = |path: &Path| -> Result<KeyLookup, StoreError> {
            match fs::symlink_metadata(path) {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(KeyLookup::MissingFile { path: path.to_path_buf() }),
                _ => Ok(KeyLookup::Found { key: read_key_file(path)?, origin: key_file_origin(path) }),
            }
        };
        match (self, env_value) {
            (KeySource::EnvOrFile | KeySource::Env, Some(value)) => {
                Ok(KeyLookup::Found { key: parse_env_value(value)?, origin: KEY_ENV_VAR.to_owned() })
            }
            (KeySource::EnvOrFile, None) => file(&default_key_file(db_path)),
            (KeySource::Env, None) => Err(StoreError::Key {
                detail: format!("{KEY_ENV_VAR} is not set; set it to the base64 of 32 random bytes"),
            }),
            (KeySource::File(path), _) => file(path),
            (KeySource::Bytes(bytes), _) => Ok(KeyLookup::Found {
                key: StoreKey::from_bytes(*bytes),
                origin: "the key given in the store options".to_owned(),
            }),
        }
    }

    /// The value of `WARDEN_KEY` if this source reads it.
    fn env_value(&self) -> Option<OsString> {
        match self {
            KeySource::EnvOrFile | KeySource::Env => std::env::var_os(KEY_ENV_VAR),
            KeySource::File(_) | KeySource::Bytes(_) => None,
        }
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
    match create_key_file_inner(path) {
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

/// Creates the key file at `path` with a new random key, atomically: the key goes to a temporary file in
/// the same directory (mode 0600), which is fsync-ed and then hard-linked to `path` — a link fails if
/// `path` exists, so a concurrent creator's key is never replaced — and the directory is fsync-ed. A
/// crash leaves either no key file or a whole one (and at worst a stray `.<name>.tmp-…` file).
pub fn create_key_file(path: &Path) -> Result<StoreKey, StoreError> {
    match create_key_file_inner(path) {
        Ok(key) => Ok(key),
        Err(CreateError::Exists) => Err(StoreError::Key {
            detail: format!("{} already exists; a key file is never replaced", key_file_origin(path)),
        }),
        Err(CreateError::Failed(error)) => Err(error),
    }
}

fn create_key_file_inner(path: &Path) -> Result<StoreKey, CreateError> {
    let failed = |what: &str, e: std::io::Error| {
        CreateError::Failed(StoreError::Key { detail: format!("could not {what} key file {}: {e}", path.display()) })
    };
    let Some(name) = path.file_name() else {
        return Err(CreateError::Failed(StoreError::Key {
            detail: format!("key file path {} does not name a file", path.display()),
        }));
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let suffix = <[u8; 8]>::try_generate().map_err(|e| {
        CreateError::Failed(StoreError::Key { detail: format!("the system random generator failed: {e}") })
    })?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let temp = dir.join(temp_name);
    let key = StoreKey::generate().map_err(CreateError::Failed)?;
    let written = (|| -> Result<(), CreateError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| failed("create a temporary file for the", e))?;
        let mut text = key.to_base64();
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(|e| failed("write the temporary file for the", e))?;
        file.sync_all().map_err(|e| failed("sync the temporary file for the", e))?;
        match fs::hard_link(&temp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(CreateError::Exists),
            Err(e) => Err(failed("link into place the", e)),
        }
    })();
    // The temporary name goes whatever happened; a failure here leaves only a stray file.
    if let Err(e) = fs::remove_file(&temp)
        && e.kind() != ErrorKind::NotFound
    {
        tracing::warn!(file = %temp.display(), error = %e, "could not remove a temporary key file");
    }
    written?;
    // Make the new directory entry durable too: losing the key loses every record.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| failed("sync the directory of the", e))?;
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
    let trimmed = text.trim();
    let way_on = "if the store's records were sealed with this key, restore the key file from a backup; if \
                  not (or the store holds nothing you need), delete the key file and a new key is created (a \
                  store that holds records then needs `start_over_if_key_lost`)";
    if trimmed.is_empty() {
        return Err(problem(format!(
            "is empty (a key creation was interrupted, e.g. by a crash, in an older build); {way_on}"
        )));
    }
    let is_base64 = trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    let chars = trimmed.trim_end_matches('=').len();
    if is_base64 && chars < KEY_BASE64_CHARS {
        return Err(problem(format!(
            "holds {chars} base64 characters ({} bytes) where a {KEY_LEN}-byte key needs {KEY_BASE64_CHARS}: it is \
             truncated (a key creation was interrupted, e.g. by a crash, in an older build); {way_on}",
            chars * 6 / 8,
        )));
    }
    StoreKey::from_base64(&text, &key_file_origin(path))
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
    fn lookup_reports_a_missing_file_without_creating_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("store");
        match KeySource::EnvOrFile.lookup_with_env(&db, None).expect("lookup") {
            KeyLookup::MissingFile { path } => assert_eq!(path, dir.path().join("store.key")),
            other => panic!("expected a missing file, got {other:?}"),
        }
        assert!(!dir.path().join("store.key").exists(), "lookup never creates a key file");
        let env_key = StoreKey::from_bytes([9; 32]).to_base64();
        let found = KeySource::EnvOrFile.lookup_with_env(&db, Some(OsString::from(env_key.as_str()))).expect("env");
        assert_eq!(found.origin(), "WARDEN_KEY");
        let created = create_key_file(&dir.path().join("store.key")).expect("create");
        match KeySource::EnvOrFile.lookup_with_env(&db, None).expect("lookup") {
            KeyLookup::Found { key, origin } => {
                assert_eq!(key.bytes(), created.bytes());
                assert!(origin.starts_with("key file ") && origin.ends_with("store.key"), "{origin}");
            }
            other => panic!("expected the key, got {other:?}"),
        }
    }

    #[test]
    fn key_files_are_created_atomically_and_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.key");
        let first = create_key_file(&path).expect("create");
        let d = match create_key_file(&path) {
            Err(StoreError::Key { detail }) => detail,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(d.contains("already exists") && d.contains("never replaced"), "{d}");
        assert_eq!(read_key_file(&path).expect("read").bytes(), first.bytes(), "the first key stays");
        assert_eq!(load_or_create_key_file(&path).expect("load").bytes(), first.bytes());
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["store.key".to_owned()], "no temporary file is left behind");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn empty_and_truncated_key_files_say_so_and_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.key");
        let write = |text: &str| {
            fs::write(&path, text).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        write("");
        let d = detail(read_key_file(&path));
        assert!(d.contains("store.key") && d.contains("is empty") && d.contains("restore the key file"), "{d}");
        assert!(d.contains("delete the key file"), "{d}");
        let whole = StoreKey::from_bytes([4; 32]).to_base64();
        write(&whole[..20]);
        let d = detail(read_key_file(&path));
        assert!(d.contains("truncated") && d.contains("20 base64 characters"), "{d}");
        write(&format!("{}\n", whole.as_str()));
        assert_eq!(read_key_file(&path).expect("whole key").bytes(), &[4; 32]);
    }

    #[test]
    fn default_key_file_sits_beside_the_database() {
        assert_eq!(default_key_file(Path::new("/var/lib/warden/store")), Path::new("/var/lib/warden/store.key"));
        assert_eq!(default_key_file(Path::new("/var/lib/warden/store/")), Path::new("/var/lib/warden/store.key"));
        assert_eq!(default_key_file(Path::new("/")), Path::new("/warden.key"));
    }
}
