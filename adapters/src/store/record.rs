//! The record format: how a snapshot or a log entry becomes the bytes of a sled value, and back.
//!
//! A record is sealed in two steps:
//!
//! 1. **Envelope**: the body (a [`Snapshot`] or a [`SessionEvent`]) is wrapped as
//!    `{ "format": RECORD_FORMAT_VERSION, "body": … }` and encoded with rmp-serde as a map with field names
//!    (`to_vec_named`), so fields can be added later without misreading old records.
//! 2. **Seal**: the plaintext is encrypted with XChaCha20-Poly1305 under the store key, with a fresh random
//!    24-byte nonce. The stored value is `[RECORD_LAYOUT] ‖ nonce (24) ‖ ciphertext ‖ tag (16)`.
//!
//! The associated data binds a record to its place: `"warden-store" ‖ 0 ‖ layout ‖ kind ‖ session id`,
//! plus `0 ‖ sequence (u64, big-endian)` for log entries. A record copied to another session, from the
//! log to the snapshots, or to another log position does not decrypt. One more record has no session:
//! the key check ([`RecordCodec::seal_key_check`]), a known text sealed when a store is created, which
//! tells a changed key from damaged records when the store opens.
//!
//! [`RecordCodec::reseal`] moves a record from one key to another (key rotation), and
//! [`RecordCodec::salvage_login_attempts`] reads just the login history out of a snapshot record that
//! decrypts but does not decode as a whole.
//!
//! [`RecordCodec::open_snapshot`], [`RecordCodec::open_log`] and [`RecordCodec::open_log_step`] never panic
//! on stored bytes: every
//! problem is a [`RecordError`] whose message (the quarantine reason) names it without quoting record
//! contents. Plaintext buffers are zeroed after use.

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadInOut, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use warden_engine::secret::serialize_exposed;
use warden_engine::{SNAPSHOT_FORMAT_VERSION, SessionEvent, SessionId, Snapshot, StoreError, UnixMs};
use zeroize::Zeroizing;

use super::key::StoreKey;

/// The envelope format this build writes and reads (the `format` field of every record).
pub const RECORD_FORMAT_VERSION: u32 = 1;

/// The envelope version of a log record holding the entries of one step of a session (a list): what the
/// store writes to the log. Log records of [`RECORD_FORMAT_VERSION`] (one entry each, written by older
/// builds) are still read.
pub const LOG_STEP_FORMAT_VERSION: u32 = 2;

/// The first byte of every sealed record: the layout `nonce ‖ ciphertext ‖ tag` with XChaCha20-Poly1305.
pub const RECORD_LAYOUT: u8 = 1;

/// Nonce length, in bytes.
pub const NONCE_LEN: usize = 24;

/// Authentication tag length, in bytes.
pub const TAG_LEN: usize = 16;

/// The shortest possible sealed record: layout byte, nonce and tag around an empty plaintext.
pub const MIN_RECORD_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// Which slot a record belongs to; part of the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordAddress<'a> {
    /// The snapshot of a session.
    Snapshot(&'a SessionId),
    /// Entry `seq` of a session's transition log.
    Log(&'a SessionId, u64),
    /// The store's key check (one per store, in the `meta` tree).
    KeyCheck,
}

impl RecordAddress<'_> {
    /// The associated data for this address.
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        aad.extend_from_slice(b"warden-store\0");
        aad.push(RECORD_LAYOUT);
        match self {
            RecordAddress::Snapshot(session) => {
                aad.push(b's');
                aad.extend_from_slice(session.as_str().as_bytes());
            }
            RecordAddress::Log(session, seq) => {
                aad.push(b'l');
                aad.extend_from_slice(session.as_str().as_bytes());
                aad.push(0);
                aad.extend_from_slice(&seq.to_be_bytes());
            }
            RecordAddress::KeyCheck => aad.push(b'k'),
        }
        aad
    }

    /// What kind of body lives here, for messages.
    fn body_name(&self) -> &'static str {
        match self {
            RecordAddress::Snapshot(_) => "snapshot",
            RecordAddress::Log(..) => "log entry",
            RecordAddress::KeyCheck => "key check",
        }
    }
}

/// Why a stored record cannot be read. The message is the quarantine reason: it never quotes the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Too short to be a sealed record (a truncated write).
    #[error("record is {len} bytes, shorter than the {MIN_RECORD_LEN}-byte minimum of a sealed record (truncated?)")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The first byte is not a layout this build reads.
    #[error("record starts with layout byte {found:#04x}; this build reads layout {RECORD_LAYOUT:#04x}")]
    UnknownLayout {
        /// The byte found.
        found: u8,
    },
    /// Authentication failed: another key, corrupted bytes, or a record moved from another place.
    #[error(
        "record does not decrypt with this store's key (written with another key, corrupted, or moved from \
         another session or position)"
    )]
    Unauthentic,
    /// The envelope's format version is not one this build reads.
    #[error("record format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The snapshot inside has a format version this build does not read.
    #[error("snapshot format version {found}; this build reads version {supported}")]
    UnsupportedSnapshotVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// It decrypted but does not decode as the expected body.
    #[error("record decrypted but does not decode as a {what}: {detail}")]
    Decode {
        /// What was expected (`snapshot`, `log entry`).
        what: &'static str,
        /// The decoder's complaint, with quoted values removed.
        detail: String,
    },
    /// A snapshot stored under one session names another.
    #[error("snapshot names session {found} but is stored under {expected}")]
    WrongSession {
        /// The key it is stored under.
        expected: String,
        /// The session it names.
        found: String,
    },
}

/// Seals and opens records with one store key.
#[derive(Clone)]
pub struct RecordCodec {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for RecordCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordCodec(XChaCha20-Poly1305, key ***)")
    }
}

/// The envelope as written.
#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    format: u32,
    body: &'a T,
}

/// The envelope as read; `T = IgnoredAny` reads the version alone.
#[derive(Deserialize)]
struct EnvelopeIn<T> {
    format: u32,
    body: T,
}

/// The first field of a snapshot, read before the rest.
#[derive(Deserialize)]
struct SnapshotVersion {
    format_version: u32,
}

/// The one field of a snapshot worth salvaging from a record that does not decode as a whole (serde
/// skips the others).
#[derive(Deserialize)]
struct LoginAttemptsOnly {
    login_attempts: Vec<UnixMs>,
}

/// The plaintext of the key check record.
const KEY_CHECK_TEXT: &str = "warden-store key check";

/// The plaintext room a record is sealed in before its buffer has to grow (a snapshot with a long token
/// and a few extras fits).
const SEAL_CAPACITY: usize = 2048;

/// A fresh random nonce from the operating system's generator.
fn new_nonce(address: &RecordAddress<'_>) -> Result<XNonce, StoreError> {
    XNonce::try_generate().map_err(|e| StoreError::Encode {
        session: session_of(address).to_owned(),
        detail: format!("the system random generator failed to make a nonce: {e}"),
    })
}

impl RecordCodec {
    /// A codec for this key.
    pub fn new(key: &StoreKey) -> RecordCodec {
        let key = Key::from(*key.bytes());
        RecordCodec { cipher: XChaCha20Poly1305::new(&key) }
    }

    /// Seals a snapshot for its session's slot.
    pub fn seal_snapshot(&self, snapshot: &Snapshot) -> Result<Vec<u8>, StoreError> {
        self.seal_envelope(RecordAddress::Snapshot(&snapshot.session_id), RECORD_FORMAT_VERSION, snapshot)
    }

    /// Seals a log entry for position `seq` of a session's log, as older builds wrote it (one entry per
    /// record, [`RECORD_FORMAT_VERSION`]).
    pub fn seal_log(&self, session: &SessionId, seq: u64, event: &SessionEvent) -> Result<Vec<u8>, StoreError> {
        self.seal_envelope(RecordAddress::Log(session, seq), RECORD_FORMAT_VERSION, event)
    }

    /// Seals the entries of one step for position `seq` of a session's log ([`LOG_STEP_FORMAT_VERSION`]).
    pub fn seal_log_step(&self, session: &SessionId, seq: u64, events: &[SessionEvent]) -> Result<Vec<u8>, StoreError> {
        self.seal_envelope(RecordAddress::Log(session, seq), LOG_STEP_FORMAT_VERSION, &events)
    }

    /// Seals any body in an envelope of any format version. The store writes only
    /// [`RECORD_FORMAT_VERSION`]; tools and tests use this to write records of other versions.
    pub fn seal_envelope<T: Serialize>(
        &self,
        address: RecordAddress<'_>,
        format: u32,
        body: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let nonce = new_nonce(&address)?;
        // The record's bytes: the layout, the nonce, then the plaintext written in place and encrypted in
        // place (one buffer, sized for a snapshot so that it rarely grows; zeroed if encoding fails).
        let mut record = Zeroizing::new(Vec::with_capacity(1 + NONCE_LEN + SEAL_CAPACITY + TAG_LEN));
        record.push(RECORD_LAYOUT);
        record.extend_from_slice(&nonce);
        // The one place a record's secrets are serialised in clear: the bytes are encrypted below.
        let encoded = serialize_exposed(|| rmp_serde::encode::write_named(&mut *record, &EnvelopeOut { format, body }));
        encoded.map_err(|e| StoreError::Encode {
            session: session_of(&address).to_owned(),
            detail: format!("rmp-serde: {e}"),
        })?;
        let aad = address.associated_data();
        let tag =
            self.cipher.encrypt_inout_detached(&nonce, &aad, (&mut record[1 + NONCE_LEN..]).into()).map_err(|_| {
                StoreError::Encode { session: session_of(&address).to_owned(), detail: "encryption failed".to_owned() }
            })?;
        record.extend_from_slice(&tag);
        Ok(std::mem::take(&mut *record))
    }

    /// Seals raw plaintext bytes (no envelope) at an address.
    pub fn seal_bytes(&self, address: RecordAddress<'_>, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = new_nonce(&address)?;
        let aad = address.associated_data();
        let ciphertext = self.cipher.encrypt(&nonce, Payload { msg: plaintext, aad: &aad }).map_err(|_| {
            StoreError::Encode { session: session_of(&address).to_owned(), detail: "encryption failed".to_owned() }
        })?;
        let mut record = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        record.push(RECORD_LAYOUT);
        record.extend_from_slice(&nonce);
        record.extend_from_slice(&ciphertext);
        Ok(record)
    }

    /// Opens a sealed record at an address, giving its plaintext.
    pub fn open_bytes(&self, address: RecordAddress<'_>, record: &[u8]) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        if record.len() < MIN_RECORD_LEN {
            return Err(RecordError::TooShort { len: record.len() });
        }
        let (layout, rest) = record.split_at(1);
        if layout[0] != RECORD_LAYOUT {
            return Err(RecordError::UnknownLayout { found: layout[0] });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| RecordError::TooShort { len: record.len() })?;
        let aad = address.associated_data();
        self.cipher
            .decrypt(&nonce, Payload { msg: ciphertext, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| RecordError::Unauthentic)
    }

    /// Opens a session's snapshot record.
    pub fn open_snapshot(&self, session: &SessionId, record: &[u8]) -> Result<Snapshot, RecordError> {
        let address = RecordAddress::Snapshot(session);
        let plaintext = self.open_bytes(address, record)?;
        check_format(&plaintext, address)?;
        let version: EnvelopeIn<SnapshotVersion> = decode(&plaintext, address)?;
        if version.body.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(RecordError::UnsupportedSnapshotVersion {
                found: version.body.format_version,
                supported: SNAPSHOT_FORMAT_VERSION,
            });
        }
        let envelope: EnvelopeIn<Snapshot> = decode(&plaintext, address)?;
        if envelope.body.session_id != *session {
            return Err(RecordError::WrongSession {
                expected: session.to_string(),
                found: envelope.body.session_id.to_string(),
            });
        }
        Ok(envelope.body)
    }

    /// Whether a record at `address` authenticates under this key (its bytes are whole and were sealed
    /// with this key for this place). Nothing is decoded.
    pub fn authenticates(&self, address: RecordAddress<'_>, record: &[u8]) -> bool {
        self.open_bytes(address, record).is_ok()
    }

    /// Seals the store's key check: a known text that only this key opens.
    pub fn seal_key_check(&self) -> Result<Vec<u8>, StoreError> {
        self.seal_envelope(RecordAddress::KeyCheck, RECORD_FORMAT_VERSION, &KEY_CHECK_TEXT)
    }

    /// Whether `record` is a key check sealed with this key.
    pub fn opens_key_check(&self, record: &[u8]) -> bool {
        let Ok(plaintext) = self.open_bytes(RecordAddress::KeyCheck, record) else { return false };
        matches!(decode::<EnvelopeIn<String>>(&plaintext, RecordAddress::KeyCheck),
            Ok(envelope) if envelope.body == KEY_CHECK_TEXT)
    }

    /// Re-seals a record sealed by `from` (another key) at `address` under this codec's key, unchanged
    /// inside. Fails as [`RecordCodec::open_bytes`] does with `from` when the record does not open.
    pub fn reseal(
        &self,
        from: &RecordCodec,
        address: RecordAddress<'_>,
        record: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        let plaintext = from.open_bytes(address, record)?;
        self.seal_bytes(address, &plaintext)
            .map_err(|e| RecordError::Decode { what: "re-sealed record", detail: e.to_string() })
    }

    /// The login attempts of a snapshot record that decrypts but does not open as a whole snapshot (a
    /// damaged or drifted field, another format version): the body is decoded into a struct with only
    /// `login_attempts` (other fields are skipped). `None` when the record does not decrypt or has no
    /// readable `login_attempts`.
    pub fn salvage_login_attempts(&self, session: &SessionId, record: &[u8]) -> Option<Vec<UnixMs>> {
        let address = RecordAddress::Snapshot(session);
        let plaintext = self.open_bytes(address, record).ok()?;
        decode::<EnvelopeIn<LoginAttemptsOnly>>(&plaintext, address).ok().map(|envelope| envelope.body.login_attempts)
    }

    /// Opens entry `seq` of a session's log.
    pub fn open_log(&self, session: &SessionId, seq: u64, record: &[u8]) -> Result<SessionEvent, RecordError> {
        let address = RecordAddress::Log(session, seq);
        let plaintext = self.open_bytes(address, record)?;
        check_format(&plaintext, address)?;
        let envelope: EnvelopeIn<SessionEvent> = decode(&plaintext, address)?;
        Ok(envelope.body)
    }

    /// Opens the log record at position `seq` of a session's log: the entries of one step (a record of
    /// [`LOG_STEP_FORMAT_VERSION`]), or the one entry of a record of [`RECORD_FORMAT_VERSION`].
    pub fn open_log_step(
        &self,
        session: &SessionId,
        seq: u64,
        record: &[u8],
    ) -> Result<Vec<SessionEvent>, RecordError> {
        let address = RecordAddress::Log(session, seq);
        let plaintext = self.open_bytes(address, record)?;
        let head: EnvelopeIn<IgnoredAny> = decode(&plaintext, address)?;
        match head.format {
            RECORD_FORMAT_VERSION => Ok(vec![decode::<EnvelopeIn<SessionEvent>>(&plaintext, address)?.body]),
            LOG_STEP_FORMAT_VERSION => Ok(decode::<EnvelopeIn<Vec<SessionEvent>>>(&plaintext, address)?.body),
            found => Err(RecordError::UnsupportedFormat { found, supported: LOG_STEP_FORMAT_VERSION }),
        }
    }
}

fn session_of<'a>(address: &RecordAddress<'a>) -> &'a str {
    match address {
        RecordAddress::Snapshot(session) | RecordAddress::Log(session, _) => session.as_str(),
        RecordAddress::KeyCheck => "(key check)",
    }
}

/// Reads the envelope's version alone and refuses versions this build does not read.
fn check_format(plaintext: &[u8], address: RecordAddress<'_>) -> Result<(), RecordError> {
    let head: EnvelopeIn<IgnoredAny> = decode(plaintext, address)?;
    if head.format != RECORD_FORMAT_VERSION {
        return Err(RecordError::UnsupportedFormat { found: head.format, supported: RECORD_FORMAT_VERSION });
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(plaintext: &[u8], address: RecordAddress<'_>) -> Result<T, RecordError> {
    rmp_serde::from_slice(plaintext)
        .map_err(|e| RecordError::Decode { what: address.body_name(), detail: redact_quoted(&e.to_string()) })
}

/// Removes values that a decoder's message may quote, so a reason never carries record contents:
/// every `"…"` span is emptied, and every `` `…` `` span that is not a short identifier (a field or
/// variant name) is too.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        let Some(len) = after.find(quote) else {
            // An unterminated quote: drop everything after it.
            out.push('…');
            return out;
        };
        let inner = &after[..len];
        let is_name = quote == '`'
            && inner.len() <= 32
            && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ',' || c == ' ');
        out.push_str(if is_name { inner } else { "…" });
        out.push(quote);
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_names_and_drops_values() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "eyJhbGciOi.secret", expected u32"#),
            r#"invalid type: string "…", expected u32"#
        );
        assert_eq!(redact_quoted("missing field `grant`"), "missing field `grant`");
        assert_eq!(
            redact_quoted("unknown variant `eyJ.hbG-ciOi`, expected `Valid`"),
            "unknown variant `…`, expected `Valid`"
        );
        assert_eq!(redact_quoted("dangling \"abc"), "dangling \"…");
        assert_eq!(redact_quoted("no quotes"), "no quotes");
    }

    #[test]
    fn the_key_check_opens_only_with_its_key_and_reseal_moves_records() {
        let a_key = RecordCodec::new(&StoreKey::from_bytes([3; 32]));
        let b_key = RecordCodec::new(&StoreKey::from_bytes([4; 32]));
        let check = a_key.seal_key_check().expect("seal");
        assert!(a_key.opens_key_check(&check));
        assert!(!b_key.opens_key_check(&check));
        let session = SessionId::new("a").expect("id");
        let other_text = a_key.seal_envelope(RecordAddress::KeyCheck, 1, &"something else").expect("seal");
        assert!(!a_key.opens_key_check(&other_text), "the text must match too");

        let sealed = a_key.seal_bytes(RecordAddress::Log(&session, 3), b"entry").expect("seal");
        let moved = b_key.reseal(&a_key, RecordAddress::Log(&session, 3), &sealed).expect("reseal");
        assert!(!a_key.authenticates(RecordAddress::Log(&session, 3), &moved));
        assert_eq!(b_key.open_bytes(RecordAddress::Log(&session, 3), &moved).expect("open").as_slice(), b"entry");
        assert_eq!(b_key.reseal(&b_key, RecordAddress::Log(&session, 3), &sealed), Err(RecordError::Unauthentic));
    }

    #[test]
    fn login_attempts_are_salvaged_from_a_snapshot_that_does_not_decode() {
        #[derive(Serialize)]
        struct Drifted<'a> {
            format_version: u32,
            session_id: &'a str,
            saved_at: &'a str,
            login_attempts: Vec<i64>,
        }
        let codec = RecordCodec::new(&StoreKey::from_bytes([3; 32]));
        let session = SessionId::new("a").expect("id");
        let drifted =
            Drifted { format_version: 1, session_id: "a", saved_at: "not a time", login_attempts: vec![5, 9] };
        let record = codec.seal_envelope(RecordAddress::Snapshot(&session), 1, &drifted).expect("seal");
        assert!(matches!(codec.open_snapshot(&session, &record), Err(RecordError::Decode { .. })));
        assert_eq!(
            codec.salvage_login_attempts(&session, &record),
            Some(vec![UnixMs::from_millis(5), UnixMs::from_millis(9)])
        );
        let other = RecordCodec::new(&StoreKey::from_bytes([4; 32]));
        assert_eq!(other.salvage_login_attempts(&session, &record), None, "nothing without the key");
        let no_history = codec.seal_envelope(RecordAddress::Snapshot(&session), 1, &vec![1, 2]).expect("seal");
        assert_eq!(codec.salvage_login_attempts(&session, &no_history), None);
    }

    #[test]
    fn records_are_bound_to_their_address() {
        let codec = RecordCodec::new(&StoreKey::from_bytes([3; 32]));
        let a = SessionId::new("a").expect("id");
        let b = SessionId::new("b").expect("id");
        let sealed = codec.seal_bytes(RecordAddress::Log(&a, 1), b"hello").expect("seal");
        assert_eq!(codec.open_bytes(RecordAddress::Log(&a, 1), &sealed).expect("open").as_slice(), b"hello");
        for wrong in [RecordAddress::Log(&a, 2), RecordAddress::Log(&b, 1), RecordAddress::Snapshot(&a)] {
            assert_eq!(codec.open_bytes(wrong, &sealed), Err(RecordError::Unauthentic));
        }
        assert_eq!(
            codec.open_bytes(RecordAddress::Snapshot(&a), &sealed[..10]),
            Err(RecordError::TooShort { len: 10 })
        );
        let mut relaid = sealed.clone();
        relaid[0] = 9;
        assert_eq!(codec.open_bytes(RecordAddress::Log(&a, 1), &relaid), Err(RecordError::UnknownLayout { found: 9 }));
    }
}
