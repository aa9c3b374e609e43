//! `warden-sim gen-creds`: matching credential sets for a client and a mock.
//!
//! For IBKR ([`generate_ibkr`]) it writes two folders:
//!
//! - `DIR/client/`: what the `ibkr` adapter's `credentials_from_files` reads — `consumer_key.txt`,
//!   `access_token.txt`, `access_token_secret.b64` (a random 32-byte secret, RSA-encrypted with PKCS#1
//!   v1.5 under the encryption key's public half, as IBKR's portal shows it), `private_signature.pem`
//!   and `private_encryption.pem` (RSA 2048, PKCS#1 PEM), `dhparam.pem` (RFC 7919's ffdhe2048 group),
//!   `realm.txt`;
//! - `DIR/mock/`: what the mock loads ([`super::Account::load`]) — `consumer_key.txt`,
//!   `access_token.txt`, `access_token_secret_plain.hex` (the decrypted secret: the prepend),
//!   `public_signature.pem` (SPKI PEM), `dh_prime.hex`, `dh_generator.txt`, `realm.txt`.
//!
//! For the other brokers ([`generate_account`]) it writes `DIR/account.toml` with random secrets: the
//! same file serves the mock (`--creds DIR`) and tells the client what to log in with.
//! Existing files are never overwritten.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use num_bigint::BigUint;
use rsa::PrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};

use crate::model::ModelKind;

/// RFC 7919's ffdhe2048 prime (hex), the Diffie-Hellman group the generated material uses.
pub const FFDHE2048_PRIME_HEX: &str = include_str!("../../fixtures/ibkr-demo/mock/dh_prime.hex");

/// The RSA key size.
pub const RSA_BITS: usize = 2048;

/// Why credentials could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredsError {
    /// A file exists already.
    #[error("{path} exists already; gen-creds never overwrites (choose an empty folder)")]
    Exists {
        /// The file.
        path: String,
    },
    /// A file or folder could not be written.
    #[error("cannot write {path}: {detail}")]
    Write {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Key generation or encoding failed.
    #[error("cannot generate the {what}: {detail}")]
    Crypto {
        /// What was being made.
        what: &'static str,
        /// What failed.
        detail: String,
    },
    /// The model has no mock.
    #[error("broker model `{0}` has no mock server (served: saxo, ibkr, kotak-neo, zerodha, oauth2)")]
    NotServed(ModelKind),
}

fn random_bytes(n: usize) -> Result<Vec<u8>, CredsError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| CredsError::Crypto { what: "random bytes", detail: e.to_string() })?;
    Ok(bytes)
}

fn random_text(alphabet: &[u8], n: usize) -> Result<String, CredsError> {
    Ok(random_bytes(n)?.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect())
}

/// Writes `files` (name, content, private) into `dir`, refusing to overwrite.
fn write_all(dir: &Path, files: &[(&str, String, bool)]) -> Result<Vec<PathBuf>, CredsError> {
    let write_error =
        |path: &Path, e: std::io::Error| CredsError::Write { path: path.display().to_string(), detail: e.to_string() };
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    for (name, _, _) in files {
        let path = dir.join(name);
        if path.exists() {
            return Err(CredsError::Exists { path: path.display().to_string() });
        }
    }
    let mut written = Vec::new();
    for (name, content, private) in files {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| write_error(&path, e))?;
        #[cfg(unix)]
        if *private {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| write_error(&path, e))?;
        }
        #[cfg(not(unix))]
        let _ = private;
        written.push(path);
    }
    Ok(written)
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// `DH PARAMETERS` PEM (PKCS#3: `SEQUENCE { INTEGER p, INTEGER g }`), as `openssl dhparam` writes it.
pub fn dhparam_pem(prime: &BigUint, generator: u32) -> String {
    let integer = |n: &BigUint| {
        let mut bytes = n.to_bytes_be();
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        der(0x02, &bytes)
    };
    let sequence = der(0x30, &[integer(prime), integer(&BigUint::from(generator))].concat());
    let body = base64::engine::general_purpose::STANDARD.encode(sequence);
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN DH PARAMETERS-----\n{}\n-----END DH PARAMETERS-----\n", lines.join("\n"))
}

/// Writes a matching IBKR OAuth set: `DIR/client/` and `DIR/mock/` (see the module documentation).
/// Returns the files written.
pub fn generate_ibkr(dir: &Path) -> Result<Vec<PathBuf>, CredsError> {
    let crypto = |what: &'static str| move |e: rsa::Error| CredsError::Crypto { what, detail: e.to_string() };
    let mut rng = getrandom::SysRng;
    let signature = PrivateKey::new(&mut rng, RSA_BITS).map_err(crypto("signature key"))?;
    let encryption = PrivateKey::new(&mut rng, RSA_BITS).map_err(crypto("encryption key"))?;
    let pem_error = |what: &'static str| move |e: rsa::pkcs1::Error| CredsError::Crypto { what, detail: e.to_string() };
    let signature_pem = signature.to_pkcs1_pem(LineEnding::LF).map_err(pem_error("signature key PEM"))?.to_string();
    let encryption_pem = encryption.to_pkcs1_pem(LineEnding::LF).map_err(pem_error("encryption key PEM"))?.to_string();
    let public_signature = signature
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| CredsError::Crypto { what: "public signature key PEM", detail: e.to_string() })?;
    let public_encryption = encryption
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| CredsError::Crypto { what: "public encryption key PEM", detail: e.to_string() })?;
    let secret = random_bytes(32)?;
    let encrypted =
        encryption.to_public_key().pkcs1v15_encrypt(&secret).map_err(crypto("encrypted access token secret"))?;
    let prime = BigUint::parse_bytes(FFDHE2048_PRIME_HEX.trim().as_bytes(), 16)
        .ok_or(CredsError::Crypto { what: "DH prime", detail: "the built-in prime is not hex".into() })?;
    let consumer_key = random_text(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 9)?;
    let access_token = random_text(b"0123456789abcdef", 24)?;
    let realm = "limited_poa".to_owned();
    let line = |s: &str| format!("{s}\n");
    let mut written = write_all(
        &dir.join("client"),
        &[
            ("consumer_key.txt", line(&consumer_key), false),
            ("access_token.txt", line(&access_token), true),
            ("access_token_secret.b64", line(&base64::engine::general_purpose::STANDARD.encode(encrypted)), true),
            ("private_signature.pem", signature_pem, true),
            ("private_encryption.pem", encryption_pem, true),
            ("public_encryption.pem", public_encryption, false),
            ("dhparam.pem", dhparam_pem(&prime, 2), false),
            ("realm.txt", line(&realm), false),
        ],
    )?;
    written.extend(write_all(
        &dir.join("mock"),
        &[
            ("consumer_key.txt", line(&consumer_key), false),
            ("access_token.txt", line(&access_token), true),
            ("access_token_secret_plain.hex", line(&hex::encode(&secret)), true),
            ("public_signature.pem", public_signature, false),
            ("dh_prime.hex", line(&prime.to_str_radix(16)), false),
            ("dh_generator.txt", line("2"), false),
            ("realm.txt", line(&realm), false),
        ],
    )?);
    Ok(written)
}

/// Writes `DIR/account.toml` with random secrets for a broker other than IBKR.
pub fn generate_account(kind: ModelKind, dir: &Path) -> Result<Vec<PathBuf>, CredsError> {
    let alnum = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let text = match kind {
        ModelKind::Zerodha => format!(
            "api_key = \"{}\"\napi_secret = \"{}\"\nuser_id = \"AB1234\"\n",
            random_text(alnum, 16)?,
            random_text(alnum, 32)?
        ),
        ModelKind::KotakNeo => format!(
            "consumer_key = \"{}\"\nmobile_number = \"+919999999999\"\nucc = \"MOCK1\"\nmpin = \"{}\"\ntotp_secret = \"{}\"\n",
            random_text(alnum, 24)?,
            random_text(b"0123456789", 6)?,
            random_text(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 32)?
        ),
        ModelKind::Saxo => format!(
            "app_key = \"{}\"\napp_secret = \"{}\"\nredirect_uri = \"http://127.0.0.1/saxo-callback\"\n",
            random_text(alnum, 32)?,
            random_text(alnum, 32)?
        ),
        ModelKind::OAuth2 => {
            format!("client_id = \"{}\"\nclient_secret = \"{}\"\n", random_text(alnum, 16)?, random_text(alnum, 40)?)
        }
        ModelKind::Ibkr => return generate_ibkr(dir),
        other => return Err(CredsError::NotServed(other)),
    };
    write_all(dir, &[("account.toml", text, true)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_adapters::broker::ibkr::oauth::DhParams;

    #[test]
    fn dhparam_pem_reads_back() {
        let prime = BigUint::parse_bytes(FFDHE2048_PRIME_HEX.trim().as_bytes(), 16).unwrap();
        let params = DhParams::from_pem(&dhparam_pem(&prime, 2)).unwrap();
        assert_eq!((params.prime, params.generator), (prime, BigUint::from(2u32)));
        let demo = include_str!("../../fixtures/ibkr-demo/client/dhparam.pem");
        assert_eq!(DhParams::from_pem(demo).unwrap(), DhParams::from_pem(&dhparam_pem(&params_prime(), 2)).unwrap());
    }

    fn params_prime() -> BigUint {
        BigUint::parse_bytes(FFDHE2048_PRIME_HEX.trim().as_bytes(), 16).unwrap()
    }

    #[test]
    fn accounts_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate_account(ModelKind::Zerodha, dir.path()).unwrap();
        assert_eq!(written.len(), 1);
        let account = super::super::Account::load(ModelKind::Zerodha, dir.path()).unwrap();
        assert_eq!(account.broker(), "zerodha");
        let e = generate_account(ModelKind::Zerodha, dir.path()).unwrap_err();
        assert!(matches!(e, CredsError::Exists { .. }), "{e}");
        assert!(matches!(generate_account(ModelKind::AngelOne, dir.path()), Err(CredsError::NotServed(_))));
    }
}
