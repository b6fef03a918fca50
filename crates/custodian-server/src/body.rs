//! JSON request bodies. Parsing failures become problem documents whose text never holds
//! a submitted value (serde's own messages quote values, so they are rewritten), and, when
//! the caller was authenticated, a refusal in the audit trail.

use crate::AppState;
use crate::extract::call_context;
use crate::problem::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use custodian_core::audit::{Action, AdminAction};
use custodian_core::operation::Operation;
use custodian_core::principal::Principal;
use custodian_core::purpose::PurposeName;
use serde::de::DeserializeOwned;

/// The action a request body feeds, so a body refused before parsing is audited as an
/// attempt at that action.
pub trait Audited {
    const ACTION: Action;
}

macro_rules! audited {
    ($t:ty, $a:expr) => {
        impl Audited for $t {
            const ACTION: Action = $a;
        }
    };
}
audited!(
    custodian_vault::views::NewRequest,
    Action::Admin(AdminAction::RequestReceived)
);
audited!(
    custodian_vault::views::RequestAction,
    Action::Admin(AdminAction::RequestAcknowledged)
);
audited!(
    custodian_vault::views::SubjectExport,
    Action::Processing(Operation::Collection)
);
audited!(
    custodian_vault::views::NewController,
    Action::Admin(AdminAction::ControllerCreated)
);
audited!(
    custodian_vault::views::NewToken,
    Action::Admin(AdminAction::TokenIssued)
);
audited!(
    custodian_vault::views::NewAccount,
    Action::Admin(AdminAction::AccountCreated)
);
audited!(
    custodian_vault::views::NewSession,
    Action::Admin(AdminAction::Login)
);
audited!(
    custodian_core::purpose::Purpose,
    Action::Admin(AdminAction::PurposeDocumented)
);
audited!(
    custodian_vault::views::NewSubject,
    Action::Processing(Operation::Collection)
);
audited!(
    custodian_vault::views::NewRecord,
    Action::Processing(Operation::Recording)
);
audited!(
    custodian_vault::views::FieldUpdate,
    Action::Processing(Operation::Alteration)
);
audited!(
    custodian_vault::views::LookupQuery,
    Action::Processing(Operation::Retrieval)
);
audited!(
    custodian_vault::views::BulkChange,
    Action::Processing(Operation::Alteration)
);

#[derive(Debug)]
pub struct Body<T>(pub T);

/// Keeps identifiers and drops anything else quoted, which in serde's messages is a
/// submitted value. What comes before "expected" was submitted (an unknown field's name
/// can be a value: `jean.dupont`, `Dupont`), so there only a well-formed field name
/// (`FieldName`'s rule, which keeps values out of the audit trail) is kept; what follows
/// it is the schema's own list of names and variants, kept when it looks like one.
fn sanitize(message: &str) -> String {
    let submitted = |s: &str| custodian_core::record::FieldName::parse(s).is_ok();
    let schema = |s: &str| {
        s.len() <= 64
            && !s.is_empty()
            && s.chars()
                .all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '-' || x == '.')
    };
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    // Set once ", expected" appears outside quotes (inside them it is part of a value).
    let mut in_schema = false;
    while let Some(c) = chars.next() {
        if c == '"' || c == '`' {
            let mut inner = String::new();
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                inner.push(d);
            }
            let keep = c == '`'
                && if in_schema {
                    schema(&inner)
                } else {
                    submitted(&inner)
                };
            if keep {
                out.push('`');
                out.push_str(&inner);
                out.push('`');
            } else {
                out.push_str("<value>");
            }
        } else {
            out.push(c);
            in_schema = in_schema || out.ends_with(", expected");
        }
    }
    // serde lists accepted variants after "expected"; that part is schema, but long lists
    // are noise, and numbers in "invalid value: integer 5" are values: cut after the kind.
    out.chars().take(300).collect()
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::bad_request(
            "malformed-json",
            format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut *de).map_err(|e| {
        let path = safe_path(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid input",
                format!("{path}: {}", digits_redacted(&sanitize(&inner.to_string()))),
            ),
            _ => malformed(&inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// The JSON path of an error, with every map key that is not a well-formed name (a
/// submitted key could be a value: an email, a card number) replaced by `<key>`.
fn safe_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                if custodian_core::record::FieldName::parse(key).is_ok() {
                    out.push_str(key);
                } else {
                    out.push_str("<key>");
                }
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() { ".".to_owned() } else { out }
}

fn digits_redacted(s: &str) -> String {
    // "invalid value: integer 41111111..." and "invalid length 3" carry submitted numbers.
    let mut out = String::with_capacity(s.len());
    let mut in_number = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

impl<T> FromRequest<AppState> for Body<T>
where
    T: DeserializeOwned + Audited + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let principal = parts.extensions.get::<Principal>().cloned();
        let purpose = parts.extensions.get::<PurposeName>().cloned();
        let ctx = call_context(&parts);
        let is_json = parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json"
                    || (ct.starts_with("application/") && ct.ends_with("+json"))
            });
        let result: Result<T, ApiError> = if !is_json {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json",
            ))
        } else {
            let req = Request::from_parts(parts, body);
            match axum::body::Bytes::from_request(req, state).await {
                Err(rejection) => Err(ApiError::new(
                    rejection.status(),
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        "too-large"
                    } else {
                        "unreadable-body"
                    },
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        "Body too large"
                    } else {
                        "Unreadable body"
                    },
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        "the body is larger than this server accepts".to_owned()
                    } else {
                        "the body could not be read".to_owned()
                    },
                )),
                Ok(bytes) => parse_json::<T>(&bytes),
            }
        };
        match result {
            Ok(v) => Ok(Body(v)),
            Err(e) => {
                // Audited before the answer leaves: the refusal is part of the record.
                if let Some(p) = principal {
                    let vault = state.vault.clone();
                    let reason = format!("{}: {}", e.status().as_u16(), e.detail());
                    let _ = tokio::task::spawn_blocking(move || {
                        vault.audit_rejected_input(&p, T::ACTION, purpose.as_ref(), &reason, &ctx)
                    })
                    .await;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_quoted_values_keeps_identifiers() {
        let s = sanitize("invalid type: string \"alice@example.org\", expected u32");
        assert!(!s.contains("alice"));
        let s = sanitize("unknown field `nickname`, expected one of `category`, `record`");
        assert!(s.contains("`nickname`"));
        let s = sanitize("unknown field `alice@example.org`, expected `x`");
        assert!(!s.contains("alice"));
        for name in ["jean.dupont", "Dupont", "dupont-durand", "tel_0612345678"] {
            let s = sanitize(&format!(
                "unknown field `{name}`, expected `category` or `record`"
            ));
            assert_eq!(
                s, "unknown field <value>, expected `category` or `record`",
                "{name}"
            );
        }
        let s = sanitize("invalid type: string \"jean, expected dupont\", expected `u32`");
        assert_eq!(s, "invalid type: string <value>, expected `u32`");
        let s = sanitize("unknown variant `Dupont`, expected one of `user.name`, `user-x`");
        assert_eq!(
            s,
            "unknown variant <value>, expected one of `user.name`, `user-x`"
        );
        assert_eq!(
            digits_redacted("invalid value: integer 4111111111111111"),
            "invalid value: integer #"
        );
    }
}
