//! The credentials a mock accepts: [`Account`], one kind per broker.
//!
//! Each broker has a demo account ([`Account::demo`]) whose client side [`super::client`] hands to
//! warden's adapters, so a test or an HTTP scenario needs no files. A mock can also load its account
//! from a folder ([`Account::load`]): IBKR's key material as `warden-sim gen-creds --broker ibkr` writes
//! it (`consumer_key.txt`, `access_token.txt`, `access_token_secret_plain.hex`, `public_signature.pem`,
//! `dh_prime.hex` or `dhparam.pem`, `dh_generator.txt`, `realm.txt`), the other brokers' fields from
//! `account.toml` (`api_key = "…"`, …; a field left out keeps the demo account's value).

use std::path::Path;

use rsa::PublicKey;
use warden_adapters::broker::ibkr::oauth::DhParams;
use warden_engine::Credentials;

use super::MockError;
use crate::model::ModelKind;

/// The IBKR demo account's mock-side files (see `sim/fixtures/ibkr-demo/README.md`).
pub(crate) mod ibkr_demo {
    pub(crate) const CONSUMER_KEY: &str = include_str!("../../fixtures/ibkr-demo/mock/consumer_key.txt");
    pub(crate) const ACCESS_TOKEN: &str = include_str!("../../fixtures/ibkr-demo/mock/access_token.txt");
    pub(crate) const PREPEND: &str = include_str!("../../fixtures/ibkr-demo/mock/access_token_secret_plain.hex");
    pub(crate) const PUBLIC_SIGNATURE: &str = include_str!("../../fixtures/ibkr-demo/mock/public_signature.pem");
    pub(crate) const DH_PRIME: &str = include_str!("../../fixtures/ibkr-demo/mock/dh_prime.hex");
    pub(crate) const DH_GENERATOR: &str = include_str!("../../fixtures/ibkr-demo/mock/dh_generator.txt");
    pub(crate) const REALM: &str = include_str!("../../fixtures/ibkr-demo/mock/realm.txt");
    /// The client side: what the `ibkr` adapter reads.
    pub(crate) const CLIENT_SECRET_B64: &str = include_str!("../../fixtures/ibkr-demo/client/access_token_secret.b64");
    pub(crate) const CLIENT_SIGNATURE_KEY: &str = include_str!("../../fixtures/ibkr-demo/client/private_signature.pem");
    pub(crate) const CLIENT_ENCRYPTION_KEY: &str =
        include_str!("../../fixtures/ibkr-demo/client/private_encryption.pem");
}

/// A Kite Connect app and its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KiteAccount {
    /// The app's API key.
    pub api_key: String,
    /// The app's API secret (the checksum's last part).
    pub api_secret: String,
    /// The user id profiles and orders show.
    pub user_id: String,
    /// Where `GET /connect/login` redirects with the request token; `None`: it answers with JSON.
    pub redirect_url: Option<String>,
}

/// A Kotak Neo user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KotakAccount {
    /// The consumer key (`Authorization` of the login steps).
    pub consumer_key: String,
    /// The mobile number (`+91…`).
    pub mobile_number: String,
    /// The client code.
    pub ucc: String,
    /// The MPIN of the second step.
    pub mpin: String,
    /// The TOTP secret (base32) the first step's code is checked against.
    pub totp_secret: String,
}

/// A Saxo OpenAPI application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaxoAccount {
    /// The app key (the OAuth client id).
    pub app_key: String,
    /// The app secret.
    pub app_secret: String,
    /// The redirect URI the authorization code goes to.
    pub redirect_uri: String,
}

/// An OAuth 2.0 client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Account {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
}

/// An IBKR first-party OAuth consumer, as the server knows it.
#[derive(Clone, Debug)]
pub struct IbkrAccount {
    /// The consumer key.
    pub consumer_key: String,
    /// The access token.
    pub access_token: String,
    /// The decrypted access-token secret in hex: the prepend of the live session token request.
    pub prepend_hex: String,
    /// The public half of the consumer's signature key.
    pub signature_key: PublicKey,
    /// The Diffie-Hellman parameters registered for the consumer.
    pub dh: DhParams,
    /// The OAuth realm (`limited_poa`, `test_realm`).
    pub realm: String,
}

/// The credentials one mock accepts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Account {
    /// Zerodha Kite.
    Kite(KiteAccount),
    /// Kotak Neo.
    Kotak(KotakAccount),
    /// Saxo.
    Saxo(SaxoAccount),
    /// IBKR.
    Ibkr(Box<IbkrAccount>),
    /// OAuth 2.0 client credentials.
    OAuth2(OAuth2Account),
}

impl Account {
    /// The demo account of a broker model.
    pub fn demo(kind: ModelKind) -> Result<Account, MockError> {
        Ok(match kind {
            ModelKind::Zerodha => Account::Kite(KiteAccount {
                api_key: "mockkiteapikey".into(),
                api_secret: "mock-kite-api-secret".into(),
                user_id: "AB1234".into(),
                redirect_url: None,
            }),
            ModelKind::KotakNeo => Account::Kotak(KotakAccount {
                consumer_key: "mock-kotak-consumer-key".into(),
                mobile_number: "+919999999999".into(),
                ucc: "MOCK1".into(),
                mpin: "123456".into(),
                totp_secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
            }),
            ModelKind::Saxo => Account::Saxo(SaxoAccount {
                app_key: "mock-saxo-app-key".into(),
                app_secret: "mock-saxo-app-secret".into(),
                redirect_uri: "http://127.0.0.1/saxo-callback".into(),
            }),
            ModelKind::OAuth2 => Account::OAuth2(OAuth2Account {
                client_id: "mock-client".into(),
                client_secret: "mock-client-secret".into(),
            }),
            ModelKind::Ibkr => {
                use ibkr_demo::*;
                let origin = "the IBKR demo account (sim/fixtures/ibkr-demo/mock)";
                Account::Ibkr(Box::new(ibkr_account(
                    origin,
                    CONSUMER_KEY,
                    ACCESS_TOKEN,
                    PREPEND,
                    PUBLIC_SIGNATURE,
                    Dh::Hex { prime: DH_PRIME, generator: DH_GENERATOR },
                    REALM,
                )?))
            }
            model => return Err(MockError::NotServed { model }),
        })
    }

    /// The account in `dir` for a broker model (see the module documentation for the files).
    pub fn load(kind: ModelKind, dir: &Path) -> Result<Account, MockError> {
        if kind == ModelKind::Ibkr {
            return load_ibkr(dir);
        }
        let path = dir.join("account.toml");
        let text = read(&path)?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| MockError::Credentials {
            path: path.display().to_string(),
            problem: format!("not a TOML table of strings ({})", e.message()),
        })?;
        let mut account = Account::demo(kind)?;
        let known = account.field_names();
        for (key, value) in &table {
            let Some(value) = value.as_str() else {
                return Err(MockError::Credentials {
                    path: path.display().to_string(),
                    problem: format!("`{key}` must be a string"),
                });
            };
            if !account.set(key, value) {
                return Err(MockError::Credentials {
                    path: path.display().to_string(),
                    problem: format!("unknown field `{key}` for {} (known: {})", kind.name(), known.join(", ")),
                });
            }
        }
        Ok(account)
    }

    /// Which broker it belongs to.
    pub fn broker(&self) -> &'static str {
        match self {
            Account::Kite(_) => "zerodha",
            Account::Kotak(_) => "kotak-neo",
            Account::Saxo(_) => "saxo",
            Account::Ibkr(_) => "ibkr",
            Account::OAuth2(_) => "oauth2",
        }
    }

    /// The fields `account.toml` may set.
    fn field_names(&self) -> Vec<&'static str> {
        match self {
            Account::Kite(_) => vec!["api_key", "api_secret", "user_id", "redirect_url"],
            Account::Kotak(_) => vec!["consumer_key", "mobile_number", "ucc", "mpin", "totp_secret"],
            Account::Saxo(_) => vec!["app_key", "app_secret", "redirect_uri"],
            Account::OAuth2(_) => vec!["client_id", "client_secret"],
            Account::Ibkr(_) => vec![],
        }
    }

    /// Sets one field; false if the account has no such field.
    fn set(&mut self, key: &str, value: &str) -> bool {
        let value = value.to_owned();
        match (self, key) {
            (Account::Kite(a), "api_key") => a.api_key = value,
            (Account::Kite(a), "api_secret") => a.api_secret = value,
            (Account::Kite(a), "user_id") => a.user_id = value,
            (Account::Kite(a), "redirect_url") => a.redirect_url = Some(value),
            (Account::Kotak(a), "consumer_key") => a.consumer_key = value,
            (Account::Kotak(a), "mobile_number") => a.mobile_number = value,
            (Account::Kotak(a), "ucc") => a.ucc = value,
            (Account::Kotak(a), "mpin") => a.mpin = value,
            (Account::Kotak(a), "totp_secret") => a.totp_secret = value,
            (Account::Saxo(a), "app_key") => a.app_key = value,
            (Account::Saxo(a), "app_secret") => a.app_secret = value,
            (Account::Saxo(a), "redirect_uri") => a.redirect_uri = value,
            (Account::OAuth2(a), "client_id") => a.client_id = value,
            (Account::OAuth2(a), "client_secret") => a.client_secret = value,
            _ => return false,
        }
        true
    }

    /// What a client of this account logs in with (warden's credential names), for every broker but
    /// IBKR, whose client side holds private keys (see [`super::client::ibkr_demo_credentials`]).
    pub fn client_credentials(&self) -> Credentials {
        match self {
            Account::Kite(a) => {
                Credentials::new().with("api_key", a.api_key.clone()).with("api_secret", a.api_secret.clone())
            }
            Account::Kotak(a) => Credentials::new()
                .with("consumer_key", a.consumer_key.clone())
                .with("mobile_number", a.mobile_number.clone())
                .with("ucc", a.ucc.clone())
                .with("mpin", a.mpin.clone())
                .with("totp_secret", a.totp_secret.clone()),
            Account::Saxo(a) => {
                Credentials::new().with("app_key", a.app_key.clone()).with("app_secret", a.app_secret.clone())
            }
            Account::OAuth2(a) => {
                Credentials::new().with("client_id", a.client_id.clone()).with("client_secret", a.client_secret.clone())
            }
            Account::Ibkr(a) => Credentials::new()
                .with("consumer_key", a.consumer_key.clone())
                .with("access_token", a.access_token.clone()),
        }
    }
}

/// Where the Diffie-Hellman parameters come from.
enum Dh<'a> {
    Hex { prime: &'a str, generator: &'a str },
    Pem(&'a str),
}

fn ibkr_account(
    origin: &str,
    consumer_key: &str,
    access_token: &str,
    prepend: &str,
    public_pem: &str,
    dh: Dh<'_>,
    realm: &str,
) -> Result<IbkrAccount, MockError> {
    use rsa::pkcs8::DecodePublicKey as _;
    let bad = |problem: String| MockError::Credentials { path: origin.to_owned(), problem };
    let prepend_hex = prepend.trim().to_ascii_lowercase();
    if prepend_hex.is_empty() || hex::decode(&prepend_hex).is_err() {
        return Err(bad("access_token_secret_plain.hex is not hex".into()));
    }
    let signature_key = PublicKey::from_public_key_pem(public_pem.trim())
        .map_err(|_| bad("public_signature.pem is not an RSA public key in SPKI PEM (BEGIN PUBLIC KEY)".into()))?;
    let dh = match dh {
        Dh::Hex { prime, generator } => {
            let generator: u32 =
                generator.trim().parse().map_err(|_| bad("dh_generator.txt is not a small integer".into()))?;
            DhParams::from_hex(prime, generator).map_err(|e| bad(format!("dh_prime.hex: {e}")))?
        }
        Dh::Pem(pem) => DhParams::from_pem(pem).map_err(|e| bad(format!("dhparam.pem: {e}")))?,
    };
    let non_empty = |value: &str, name: &str| {
        let value = value.trim();
        if value.is_empty() { Err(bad(format!("{name} is empty"))) } else { Ok(value.to_owned()) }
    };
    Ok(IbkrAccount {
        consumer_key: non_empty(consumer_key, "consumer_key.txt")?,
        access_token: non_empty(access_token, "access_token.txt")?,
        prepend_hex,
        signature_key,
        dh,
        realm: non_empty(realm, "realm.txt")?,
    })
}

fn read(path: &Path) -> Result<String, MockError> {
    std::fs::read_to_string(path)
        .map_err(|e| MockError::Credentials { path: path.display().to_string(), problem: e.to_string() })
}

fn load_ibkr(dir: &Path) -> Result<Account, MockError> {
    let file = |name: &str| read(&dir.join(name));
    let consumer_key = file("consumer_key.txt")?;
    let prime_path = dir.join("dh_prime.hex");
    let (prime, generator, pem);
    let dh = if prime_path.exists() {
        prime = file("dh_prime.hex")?;
        generator = if dir.join("dh_generator.txt").exists() { file("dh_generator.txt")? } else { "2".to_owned() };
        Dh::Hex { prime: &prime, generator: &generator }
    } else {
        pem = file("dhparam.pem")?;
        Dh::Pem(&pem)
    };
    let realm = if dir.join("realm.txt").exists() { file("realm.txt")? } else { "limited_poa".to_owned() };
    let account = ibkr_account(
        &dir.display().to_string(),
        &consumer_key,
        &file("access_token.txt")?,
        &file("access_token_secret_plain.hex")?,
        &file("public_signature.pem")?,
        dh,
        &realm,
    )?;
    Ok(Account::Ibkr(Box::new(account)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_broker_has_a_demo_account() {
        for kind in super::super::SERVED {
            let account = Account::demo(kind).unwrap();
            assert_eq!(account.broker(), kind.name());
        }
        assert!(matches!(Account::demo(ModelKind::AngelOne), Err(MockError::NotServed { .. })));
    }

    #[test]
    fn account_files_override_the_demo_and_name_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("account.toml"), "api_key = \"k2\"\n").unwrap();
        let Account::Kite(kite) = Account::load(ModelKind::Zerodha, dir.path()).unwrap() else { panic!("kite") };
        assert_eq!((kite.api_key.as_str(), kite.api_secret.as_str()), ("k2", "mock-kite-api-secret"));
        std::fs::write(dir.path().join("account.toml"), "api_kee = \"k2\"\n").unwrap();
        let e = Account::load(ModelKind::Zerodha, dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown field `api_kee` for zerodha"), "{e}");
        let e = Account::load(ModelKind::Ibkr, dir.path()).unwrap_err().to_string();
        assert!(e.contains("consumer_key.txt"), "{e}");
    }
}
