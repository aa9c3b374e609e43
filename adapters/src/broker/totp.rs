//! Time-based one-time passwords (RFC 6238) over HMAC-SHA1 (RFC 4226), and the base32 secrets
//! (RFC 4648) authenticator apps share.
//!
//! Pure functions: [`totp`] takes the time as a parameter, so the RFC's test vectors check it exactly.
//!
//! ```
//! use warden_adapters::broker::totp::{base32_decode, totp};
//! use warden_engine::UnixMs;
//!
//! let key = base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(); // "12345678901234567890"
//! assert_eq!(totp(&key, UnixMs::from_millis(59_000), 30, 8), "94287082");
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use warden_engine::UnixMs;

/// Why a base32 secret could not be read. The message never contains the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base32Error {
    /// A character outside `A–Z 2–7` (spaces, dashes and `=` padding are allowed and ignored).
    #[error("the secret has a character that is not base32 at position {position}")]
    BadCharacter {
        /// Its position (0-based, counting every character).
        position: usize,
    },
    /// No key material at all.
    #[error("the secret is empty")]
    Empty,
}

/// Decodes a base32 secret (case-insensitive; spaces, dashes and padding ignored).
pub fn base32_decode(text: &str) -> Result<Vec<u8>, Base32Error> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u64, 0u32);
    for (position, c) in text.chars().enumerate() {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            ' ' | '-' | '=' => continue,
            _ => return Err(Base32Error::BadCharacter { position }),
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if out.is_empty() {
        return Err(Base32Error::Empty);
    }
    Ok(out)
}

/// The HOTP value (RFC 4226 §5.3) of `counter` with `digits` digits (6–8), zero-padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let digits = digits.clamp(6, 8);
    // HMAC accepts keys of any length.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else { return "0".repeat(digits as usize) };
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = (hash[hash.len() - 1] & 0x0f) as usize;
    let code = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    format!("{:0width$}", code % 10u32.pow(digits), width = digits as usize)
}

/// The TOTP value (RFC 6238) at `now` for a `step_s`-second step, with `digits` digits.
pub fn totp(key: &[u8], now: UnixMs, step_s: u64, digits: u32) -> String {
    let seconds = u64::try_from(now.as_millis().max(0) / 1000).unwrap_or(0);
    hotp(key, seconds / step_s.max(1), digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, the SHA-1 rows (key "12345678901234567890", 8 digits, 30-second steps).
    #[test]
    fn rfc_6238_vectors() {
        let key = b"12345678901234567890";
        for (seconds, expected) in [
            (59i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp(key, UnixMs::from_millis(seconds * 1000), 30, 8), expected, "T = {seconds}");
        }
    }

    /// RFC 4226 Appendix D (6 digits).
    #[test]
    fn rfc_4226_vectors() {
        let key = b"12345678901234567890";
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(key, counter as u64, 6), *code, "counter {counter}");
        }
    }

    #[test]
    fn base32_reads_authenticator_secrets() {
        assert_eq!(base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(), b"12345678901234567890");
        assert_eq!(base32_decode("gezd gnbv-gy3t qojq").unwrap(), b"1234567890");
        assert_eq!(base32_decode("MZXW6===").unwrap(), b"foo");
        assert_eq!(base32_decode("MZXW1"), Err(Base32Error::BadCharacter { position: 4 }));
        assert_eq!(base32_decode(" = "), Err(Base32Error::Empty));
    }
}
