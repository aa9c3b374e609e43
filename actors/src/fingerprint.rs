//! Keyed fingerprints of credentials: how a session that gave up on bad credentials notices, when it is
//! opened again, that it was given different ones — and leaves `Invalid` by itself.
//!
//! The fingerprint is HMAC-SHA256 of the credentials (every field's name and value, length-prefixed, in
//! name order) under a random 32-byte key made for the session the first time and kept beside the digest
//! in its snapshot, which the store encrypts. Neither part reveals the credentials; both are secrets all
//! the same (a digest invites guessing), and serialise redacted outside the store.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use warden_engine::{Credentials, CredentialsFingerprint, Secret};
use zeroize::Zeroizing;

/// The fingerprint of `credentials`, under the key of `previous` when there is one (so the two compare),
/// else under a new random key. `None` only if the system's random generator fails.
pub(crate) fn fingerprint(
    credentials: &Credentials,
    previous: Option<&CredentialsFingerprint>,
) -> Option<CredentialsFingerprint> {
    let key = match previous.and_then(|p| hex::decode(p.key.expose()).ok()).filter(|k| k.len() == 32) {
        Some(key) => Zeroizing::new(key),
        None => {
            let mut key = Zeroizing::new(vec![0u8; 32]);
            getrandom::fill(&mut key).ok()?;
            key
        }
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    for name in credentials.names() {
        let value = credentials.get(name).map_or("", Secret::expose);
        for part in [name.as_bytes(), value.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
    }
    let digest = mac.finalize().into_bytes();
    Some(CredentialsFingerprint { key: Secret::new(hex::encode(&*key)), digest: Secret::new(hex::encode(digest)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_credentials_same_digest_under_the_same_key() {
        let creds = Credentials::new().with("user", "u").with("password", "p1");
        let first = fingerprint(&creds, None).expect("fingerprint");
        let again = fingerprint(&creds, Some(&first)).expect("fingerprint");
        assert_eq!(first, again);
        let changed = fingerprint(&creds.clone().with("password", "p2"), Some(&first)).expect("fingerprint");
        assert_ne!(changed.digest, first.digest);
        assert_eq!(changed.key, first.key);
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let a = fingerprint(&Credentials::new().with("ab", "c"), Some(&first)).expect("fingerprint");
        let b = fingerprint(&Credentials::new().with("a", "bc"), Some(&first)).expect("fingerprint");
        assert_ne!(a.digest, b.digest);
        assert!(!format!("{first:?}").contains(first.digest.expose()));
    }
}
