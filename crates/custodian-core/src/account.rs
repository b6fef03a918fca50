//! Login accounts (DPA §10(b)(c)): people who sign in with a login name and a password to
//! get a short-lived session token. The rules here are the input rules; hashing is
//! `custodian_crypto::password`, storage and use are the vault's.
//!
//! - A login name is an email address, normalised as the lookup normaliser does (trimmed,
//!   lower-cased; [`crate::lookup::normalize_email`]), so `Alice@Example.org` and
//!   `alice@example.org` are one account. It is personal data: it never prints in `Debug`
//!   and the audit trail names the account id instead.
//! - A new password has 12 to 128 characters (Unicode scalar values, as sent: no trimming),
//!   any characters but control characters (NIST SP 800-63B: length, not composition
//!   rules). A password never prints in `Debug` and is never serialised.
//! - A password presented at login is only bounded (1 to 128 characters): a login never
//!   says more than "wrong login or password", whatever was sent.

use crate::ValidationError;
use crate::lookup::normalize_email;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Fewest characters a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters any password may have (also bounds the work one login asks for).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Most characters of a login name (an email address).
pub const MAX_LOGIN_CHARS: usize = 254;

/// An account's login name: a valid email address, normalised to lower case.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LoginName(String);

impl LoginName {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        normalize_email(s)
            .map(Self)
            .map_err(|_| ValidationError::new("login", "must be a valid email address"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginName(<redacted>)")
    }
}

impl TryFrom<String> for LoginName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<LoginName> for String {
    fn from(n: LoginName) -> String {
        n.0
    }
}

/// A new password that meets the policy. Wiped from memory when dropped (it lives in a
/// `SecretString`), redacted in `Debug`, never serialised.
pub struct Password(SecretString);

impl Password {
    pub fn parse(s: SecretString) -> Result<Self, ValidationError> {
        let text = s.expose_secret();
        let n = text.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
            return Err(ValidationError::new(
                "password",
                "must be 12 to 128 characters",
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "password",
                "must not contain control characters",
            ));
        }
        Ok(Self(s))
    }

    /// The password itself, for the hash function only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = SecretString::from(String::deserialize(d)?);
        Self::parse(s).map_err(serde::de::Error::custom)
    }
}

/// A password presented at login: 1 to 128 characters, nothing else is judged (no policy:
/// the answer to a login is only ever "wrong login or password").
pub struct PasswordAttempt(SecretString);

impl PasswordAttempt {
    pub fn parse(s: SecretString) -> Result<Self, ValidationError> {
        let n = s.expose_secret().chars().count();
        if !(1..=MAX_PASSWORD_CHARS).contains(&n) {
            return Err(ValidationError::new(
                "password",
                "must be 1 to 128 characters",
            ));
        }
        Ok(Self(s))
    }

    /// The attempt itself, for the verification only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for PasswordAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordAttempt(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for PasswordAttempt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = SecretString::from(String::deserialize(d)?);
        Self::parse(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "correct horse battery staple 42";

    #[test]
    fn login_names_are_normalised_emails() {
        assert_eq!(
            LoginName::parse("  Alice.Martin@Example.ORG ")
                .unwrap()
                .as_str(),
            "alice.martin@example.org"
        );
        assert_eq!(
            LoginName::parse("A@b.fr").unwrap(),
            LoginName::parse("a@B.FR").unwrap()
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.org",
            "alice@example",
            "a b@c.fr",
        ] {
            let e = LoginName::parse(bad).unwrap_err();
            assert_eq!(e.field, "login", "{bad}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(LoginName::parse(&long).is_err());
    }

    #[test]
    fn new_passwords_follow_the_policy() {
        let p = |s: &str| Password::parse(SecretString::from(s.to_owned()));
        assert!(p(&"x".repeat(11)).is_err(), "11 characters");
        assert!(p(&"x".repeat(12)).is_ok(), "12 characters");
        assert!(p(&"é".repeat(128)).is_ok(), "characters, not bytes");
        assert!(p(&"x".repeat(129)).is_err(), "129 characters");
        assert!(p("twelve chars\u{7}!").is_err(), "a control character");
        assert!(p("   spaces count   ").is_ok(), "no trimming");
        assert_eq!(p(CANARY).unwrap().expose(), CANARY);
    }

    #[test]
    fn attempts_are_only_bounded() {
        let a = |s: &str| PasswordAttempt::parse(SecretString::from(s.to_owned()));
        assert!(a("").is_err());
        assert!(a("x").is_ok());
        assert!(a(&"x".repeat(128)).is_ok());
        assert!(a(&"x".repeat(129)).is_err());
    }

    #[test]
    fn secrets_and_login_names_never_print_or_echo() {
        let p = Password::parse(SecretString::from(CANARY.to_owned())).unwrap();
        let a = PasswordAttempt::parse(SecretString::from(CANARY.to_owned())).unwrap();
        let l = LoginName::parse("canary.login@example.org").unwrap();
        for text in [format!("{p:?}"), format!("{a:?}"), format!("{l:?}")] {
            assert!(
                !text.contains("horse") && !text.contains("canary"),
                "{text}"
            );
        }
        // A refused password is not quoted in the error either.
        let e = serde_json::from_str::<Password>("\"canary\"").unwrap_err();
        assert!(!e.to_string().contains("canary"), "{e}");
        let e = serde_json::from_str::<LoginName>("\"canary-not-an-email\"").unwrap_err();
        assert!(!e.to_string().contains("canary"), "{e}");
    }
}
