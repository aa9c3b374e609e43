//! IBKR's OAuth 1.0a, as pure functions: the live session token handshake and request signing.
//!
//! The handshake (IBKR's "OAuth 1.0a Extended" for first-party consumers):
//! 1. the *prepend* is the access-token secret, RSA-decrypted (PKCS#1 v1.5) with the private encryption
//!    key, in hex ([`decrypt_prepend`]);
//! 2. a Diffie-Hellman challenge `A = g^a mod p` for a random 256-bit `a` ([`dh_challenge`]) goes with
//!    the request as `diffie_hellman_challenge`;
//! 3. the request to `/oauth/live_session_token` is signed RSA-SHA256 (PKCS#1 v1.5) with the private
//!    signature key over the prepend followed by the OAuth base string ([`base_string`],
//!    [`rsa_sha256_signature`]);
//! 4. from the answer's `diffie_hellman_response` `B`, the shared secret `K = B^a mod p`, and the live
//!    session token is `base64(HMAC-SHA1(key = K as a Java BigInteger's bytes, message = the prepend's
//!    bytes))` ([`live_session_token`]);
//! 5. it is checked against the answer's `live_session_token_signature`, the hex HMAC-SHA1 of the
//!    consumer key under the token ([`lst_signature_valid`]).
//!
//! Later requests are signed HMAC-SHA256 under the live session token ([`hmac_sha256_signature`]) and
//! carry `Authorization: OAuth realm="limited_poa", oauth_consumer_key="…", …` ([`authorization_header`]).
//!
//! The base string is `METHOD&enc(url)&enc(k1=v1&k2=v2…)` with the parameters (OAuth's, the DH
//! challenge, the query's) sorted by name and joined without encoding each value first — IBKR's form of
//! RFC 5849 §3.4.1; `enc` is RFC 3986 percent-encoding. Values with spaces are therefore best avoided in
//! signed query strings.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use num_bigint::BigUint;
use rsa::PrivateKey;
use rsa::sha2::Sha256;
use sha1::Sha1;
use warden_engine::Secret;

use crate::broker::http::percent_encode;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why OAuth material could not be used. Messages never contain key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// A PEM private key could not be read.
    #[error("`{which}` is not an RSA private key in PEM (PKCS#1 or PKCS#8)")]
    PrivateKey {
        /// Which credential.
        which: &'static str,
    },
    /// The Diffie-Hellman parameters could not be read.
    #[error("the Diffie-Hellman parameters are not usable: {problem}")]
    DhParams {
        /// What is wrong.
        problem: &'static str,
    },
    /// The access-token secret is not base64 or does not decrypt.
    #[error("the access token secret could not be decrypted with the encryption key: {problem}")]
    AccessTokenSecret {
        /// What is wrong.
        problem: &'static str,
    },
    /// A value that must be hex is not.
    #[error("`{which}` is not a hexadecimal number")]
    NotHex {
        /// Which value.
        which: &'static str,
    },
    /// RSA signing failed (a key too small for SHA-256).
    #[error("RSA-SHA256 signing failed: the signature key is unusable")]
    Signing,
    /// The live session token is not base64.
    #[error("the live session token is not base64")]
    TokenEncoding,
}

/// Diffie-Hellman parameters: the prime `p` and the generator `g`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhParams {
    /// The prime.
    pub prime: BigUint,
    /// The generator (usually 2).
    pub generator: BigUint,
}

impl DhParams {
    /// Parameters from a hex prime and a generator.
    pub fn from_hex(prime_hex: &str, generator: u32) -> Result<DhParams, OAuthError> {
        let prime = parse_hex(prime_hex, "dh_prime")?;
        DhParams::new(prime, BigUint::from(generator))
    }

    /// Checked parameters: an odd prime of at least 512 bits and a generator in `2..p-1`.
    pub fn new(prime: BigUint, generator: BigUint) -> Result<DhParams, OAuthError> {
        if prime.bits() < 512 || !prime.bit(0) {
            return Err(OAuthError::DhParams { problem: "the prime must be odd and at least 512 bits" });
        }
        if generator < BigUint::from(2u32) || generator >= &prime - 1u32 {
            return Err(OAuthError::DhParams { problem: "the generator must lie between 2 and p - 2" });
        }
        Ok(DhParams { prime, generator })
    }

    /// Parameters from a PEM `DH PARAMETERS` block (what `openssl dhparam` writes): DER
    /// `SEQUENCE { INTEGER p, INTEGER g, … }`.
    pub fn from_pem(pem: &str) -> Result<DhParams, OAuthError> {
        let der = pem_body(pem, "DH PARAMETERS").ok_or(OAuthError::DhParams { problem: "no DH PARAMETERS block" })?;
        let (prime, generator) = der_two_integers(&der).ok_or(OAuthError::DhParams { problem: "malformed DER" })?;
        DhParams::new(prime, generator)
    }
}

/// The base64 body of the first PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let text: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(text).ok()
}

/// One DER element at `at`: its tag, its content and where the next element starts.
fn der_element(der: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let tag = *der.get(at)?;
    let first = *der.get(at + 1)? as usize;
    let (length, content_start) = if first < 0x80 {
        (first, at + 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = der.get(at + 2..at + 2 + count)?;
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), at + 2 + count)
    };
    let end = content_start.checked_add(length)?;
    Some((tag, der.get(content_start..end)?, end))
}

/// The first two INTEGERs of a DER SEQUENCE.
fn der_two_integers(der: &[u8]) -> Option<(BigUint, BigUint)> {
    let (tag, sequence, _) = der_element(der, 0)?;
    if tag != 0x30 {
        return None;
    }
    let (tag_p, p, next) = der_element(sequence, 0)?;
    let (tag_g, g, _) = der_element(sequence, next)?;
    (tag_p == 0x02 && tag_g == 0x02).then(|| (BigUint::from_bytes_be(p), BigUint::from_bytes_be(g)))
}

/// A hex number (`0x` prefix and whitespace allowed).
pub fn parse_hex(text: &str, which: &'static str) -> Result<BigUint, OAuthError> {
    let clean: String = text.trim().trim_start_matches("0x").chars().filter(|c| !c.is_whitespace()).collect();
    if clean.is_empty() {
        return Err(OAuthError::NotHex { which });
    }
    BigUint::parse_bytes(clean.as_bytes(), 16).ok_or(OAuthError::NotHex { which })
}

/// An RSA private key from PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`).
pub fn parse_private_key(pem: &str, which: &'static str) -> Result<PrivateKey, OAuthError> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    let pem = pem.trim();
    PrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| PrivateKey::from_pkcs8_pem(pem))
        .map_err(|_| OAuthError::PrivateKey { which })
}

/// The prepend: the access-token secret (base64) decrypted with the encryption key, in hex.
pub fn decrypt_prepend(encryption_key: &PrivateKey, access_token_secret_b64: &str) -> Result<Secret, OAuthError> {
    let clean: String = access_token_secret_b64.chars().filter(|c| !c.is_whitespace()).collect();
    let ciphertext = B64.decode(clean).map_err(|_| OAuthError::AccessTokenSecret { problem: "it is not base64" })?;
    let plain = encryption_key
        .pkcs1v15_decrypt(&ciphertext)
        .map_err(|_| OAuthError::AccessTokenSecret { problem: "RSA decryption failed" })?;
    Ok(Secret::new(hex::encode(plain)))
}

/// `g^a mod p`: the challenge for the random `a`.
pub fn dh_challenge(params: &DhParams, random: &BigUint) -> BigUint {
    params.generator.modpow(random, &params.prime)
}

/// `B^a mod p`: the shared secret from the server's response `B`.
pub fn dh_shared_secret(params: &DhParams, response: &BigUint, random: &BigUint) -> BigUint {
    response.modpow(random, &params.prime)
}

/// A number's bytes as Java's `BigInteger.toByteArray` gives them (big-endian two's complement: a
/// leading zero byte when the top bit is set), which is how IBKR keys the HMAC.
pub fn java_bytes(n: &BigUint) -> Vec<u8> {
    let mut bytes = n.to_bytes_be();
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    bytes
}

/// The live session token (base64): HMAC-SHA1 keyed with the shared secret, over the prepend's bytes.
pub fn live_session_token(shared_secret: &BigUint, prepend_hex: &Secret) -> Result<Secret, OAuthError> {
    let prepend = hex::decode(prepend_hex.expose()).map_err(|_| OAuthError::NotHex { which: "prepend" })?;
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(&java_bytes(shared_secret)).map_err(|_| OAuthError::Signing)?;
    mac.update(&prepend);
    Ok(Secret::new(B64.encode(mac.finalize().into_bytes())))
}

/// Whether `signature_hex` is the HMAC-SHA1 of the consumer key under the live session token
/// (compared in constant time).
pub fn lst_signature_valid(lst: &Secret, consumer_key: &str, signature_hex: &str) -> bool {
    let Ok(key) = B64.decode(lst.expose()) else { return false };
    let Ok(expected) = hex::decode(signature_hex.trim()) else { return false };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&key) else { return false };
    mac.update(consumer_key.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// The signature base string: `[prepend]METHOD&enc(url)&enc(sorted k=v joined by &)`. `url` is the
/// request's URL without its query; the query's parameters belong in `params`.
pub fn base_string(method: &str, url: &str, params: &BTreeMap<String, String>, prepend: Option<&Secret>) -> String {
    let joined = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let base = format!("{}&{}&{}", method.to_ascii_uppercase(), percent_encode(url), percent_encode(&joined));
    match prepend {
        Some(prepend) => format!("{}{base}", prepend.expose()),
        None => base,
    }
}

/// RSA-SHA256 (PKCS#1 v1.5) of the base string, base64, percent-encoded for the header.
pub fn rsa_sha256_signature(signature_key: &PrivateKey, base_string: &str) -> Result<String, OAuthError> {
    let signature = signature_key.pkcs1v15_sign::<Sha256>(base_string.as_bytes()).map_err(|_| OAuthError::Signing)?;
    Ok(percent_encode(&B64.encode(signature)))
}

/// HMAC-SHA256 of the base string under the live session token, base64, percent-encoded.
pub fn hmac_sha256_signature(lst: &Secret, base_string: &str) -> Result<String, OAuthError> {
    let key = B64.decode(lst.expose()).map_err(|_| OAuthError::TokenEncoding)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| OAuthError::Signing)?;
    mac.update(base_string.as_bytes());
    Ok(percent_encode(&B64.encode(mac.finalize().into_bytes())))
}

/// The OAuth parameters of a request (without the signature).
pub fn oauth_params(
    consumer_key: &str,
    access_token: &str,
    nonce: &str,
    timestamp_s: i64,
    signature_method: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("oauth_consumer_key".to_owned(), consumer_key.to_owned()),
        ("oauth_nonce".to_owned(), nonce.to_owned()),
        ("oauth_signature_method".to_owned(), signature_method.to_owned()),
        ("oauth_timestamp".to_owned(), timestamp_s.to_string()),
        ("oauth_token".to_owned(), access_token.to_owned()),
    ])
}

/// `OAuth realm="…", k="v", …` with the parameters sorted by name (the signature among them).
pub fn authorization_header(realm: &str, params: &BTreeMap<String, String>) -> String {
    let pairs = params.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(", ");
    format!("OAuth realm=\"{realm}\", {pairs}")
}

/// A random nonce of 16 letters and digits.
pub fn nonce() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
}

/// A random 256-bit Diffie-Hellman exponent.
pub fn dh_random() -> Result<BigUint, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(BigUint::from_bytes_be(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE_KEY: &str = include_str!("../../../tests/fixtures/ibkr/private_signature.pem");
    const ENCRYPTION_KEY: &str = include_str!("../../../tests/fixtures/ibkr/private_encryption.pem");
    const DH_PARAM: &str = include_str!("../../../tests/fixtures/ibkr/dhparam.pem");
    const ACCESS_TOKEN_SECRET: &str = include_str!("../../../tests/fixtures/ibkr/access_token_secret.b64");

    // Known answers computed independently (Python's hmac/hashlib/pow and the openssl CLI) from the
    // fixtures above; see tests/fixtures/ibkr/README.md.
    include!("../../../tests/fixtures/ibkr/known_answers.rs");

    fn params() -> DhParams {
        DhParams::from_pem(DH_PARAM).unwrap()
    }

    #[test]
    fn dh_parameters_read_from_openssl_pem() {
        let p = params();
        assert_eq!(p, DhParams::from_hex(DH_PRIME, DH_GENERATOR).unwrap());
        assert_eq!(p.generator, BigUint::from(2u32));
        assert!(DhParams::from_pem("-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----").is_err());
        assert!(DhParams::from_hex("ff", 2).is_err(), "too small");
        assert!(DhParams::from_hex(DH_PRIME, 1).is_err(), "bad generator");
        assert_eq!(parse_hex("xyz", "dh_prime"), Err(OAuthError::NotHex { which: "dh_prime" }));
    }

    #[test]
    fn diffie_hellman_known_answers() {
        let p = params();
        let a = parse_hex(DH_A, "a").unwrap();
        assert_eq!(dh_challenge(&p, &a).to_str_radix(16), DH_CHALLENGE);
        let shared = dh_shared_secret(&p, &parse_hex(DH_B_PUBLIC, "b").unwrap(), &a);
        assert_eq!(shared.to_str_radix(16), DH_SHARED);
        assert_eq!(shared.bits().is_multiple_of(8), DH_SHARED_BITS_MULTIPLE_OF_8);
    }

    #[test]
    fn java_bytes_adds_a_sign_byte() {
        assert_eq!(java_bytes(&BigUint::from(0x7fu32)), [0x7f]);
        assert_eq!(java_bytes(&BigUint::from(0x80u32)), [0x00, 0x80]);
        assert_eq!(java_bytes(&BigUint::from(0x1234u32)), [0x12, 0x34]);
        assert_eq!(java_bytes(&BigUint::from(0u32)), [0x00]);
    }

    #[test]
    fn prepend_decrypts_with_the_encryption_key() {
        let key = parse_private_key(ENCRYPTION_KEY, "encryption_key").unwrap();
        assert_eq!(decrypt_prepend(&key, ACCESS_TOKEN_SECRET).unwrap().expose(), PREPEND);
        assert!(matches!(decrypt_prepend(&key, "not base64!"), Err(OAuthError::AccessTokenSecret { .. })));
        assert_eq!(
            parse_private_key("junk", "signature_key").unwrap_err().to_string(),
            "`signature_key` is not an RSA private key in PEM (PKCS#1 or PKCS#8)"
        );
    }

    #[test]
    fn live_session_token_known_answer_and_validation() {
        let shared = parse_hex(DH_SHARED, "k").unwrap();
        let lst = live_session_token(&shared, &Secret::new(PREPEND)).unwrap();
        assert_eq!(lst.expose(), LST);
        assert!(lst_signature_valid(&lst, "TESTCONS", LST_SIGNATURE));
        assert!(!lst_signature_valid(&lst, "OTHERCON", LST_SIGNATURE));
        assert!(!lst_signature_valid(&lst, "TESTCONS", "zz"));
    }

    #[test]
    fn rsa_signed_live_session_token_request() {
        let mut p = oauth_params("TESTCONS", "accesstoken0001", "n0nce16chars0001", 1_700_000_000, "RSA-SHA256");
        p.insert("diffie_hellman_challenge".into(), DH_CHALLENGE.into());
        let url = "https://api.ibkr.com/v1/api/oauth/live_session_token";
        let base = base_string("POST", url, &p, Some(&Secret::new(PREPEND)));
        assert_eq!(base, LST_BASE_STRING);
        let key = parse_private_key(SIGNATURE_KEY, "signature_key").unwrap();
        assert_eq!(rsa_sha256_signature(&key, &base).unwrap(), LST_RSA_SIGNATURE);
    }

    #[test]
    fn hmac_signed_request_with_query_parameters() {
        let mut p = oauth_params("TESTCONS", "accesstoken0001", "n0nce16chars0002", 1_700_000_001, "HMAC-SHA256");
        p.insert("conids".into(), "265598,8314".into());
        p.insert("fields".into(), "31".into());
        let base = base_string("GET", "https://api.ibkr.com/v1/api/iserver/marketdata/snapshot", &p, None);
        assert_eq!(base, HMAC_BASE_STRING);
        assert_eq!(hmac_sha256_signature(&Secret::new(LST), &base).unwrap(), HMAC_SIGNATURE);
        p.insert("oauth_signature".into(), "SIG".into());
        let header = authorization_header("limited_poa", &p);
        assert!(
            header.starts_with(
                "OAuth realm=\"limited_poa\", conids=\"265598,8314\", fields=\"31\", oauth_consumer_key=\"TESTCONS\""
            ),
            "{header}"
        );
        assert!(header.contains("oauth_signature=\"SIG\", oauth_signature_method=\"HMAC-SHA256\""), "{header}");
    }

    #[test]
    fn nonces_and_randoms() {
        let n = nonce().unwrap();
        assert_eq!(n.len(), 16);
        assert!(n.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(dh_random().unwrap().bits() <= 256);
    }
}
