//! Who may use the admin and operator endpoints: whoever sends
//! `Authorization: Bearer <ADMIN_TOKEN>`.
//!
//! A handler that needs it takes an [`Admin`] argument (first, so that a
//! request without the token learns nothing about its query or body) and
//! declares `security(("admin_token" = []))` with [`AdminProblems`] in its
//! `#[utoipa::path]`; the runtime puts the configured token in every
//! request's extensions and publishes the bearer scheme in the OpenAPI
//! document. The answers:
//!
//! - `ADMIN_TOKEN` unset: `403`, saying how to switch the endpoints on —
//!   off by default, so a deployment that forgot the token exposes nothing;
//! - no `Authorization: Bearer …`: `401` with `WWW-Authenticate: Bearer`;
//! - another token: `401` with `WWW-Authenticate: Bearer
//!   error="invalid_token"` (RFC 6750).
//!
//! The comparison is constant-time (`subtle`) once the lengths match, so
//! the time of an answer does not say how many leading bytes were right.
//! The length itself is not secret: at 16+ characters from a random
//! source, knowing it does not help guessing.
//!
//! What this module does not do: users, roles, or customer identity. One
//! shared operator secret is what a reference system needs; anything
//! more belongs in a gateway in front of it.

use crate::http::Problem;
use axum::extract::FromRequestParts;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::IntoResponses;

/// The name of the bearer security scheme in every OpenAPI document:
/// write `security(("admin_token" = []))` in a handler's `#[utoipa::path]`.
pub const SECURITY_SCHEME: &str = "admin_token";

/// The shortest `ADMIN_TOKEN` accepted: 16 characters.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// The `ADMIN_TOKEN` a service was started with. Its `Debug` hides it, so
/// it can sit in a logged configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Arc<str>);

impl AdminToken {
    /// Reads a token: at least [`MIN_TOKEN_LENGTH`] visible ASCII
    /// characters (what fits in a header unchanged). The error never
    /// contains the value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "must be visible ASCII characters only (no spaces or control characters)"
                    .to_owned(),
            );
        }
        if raw.len() < MIN_TOKEN_LENGTH {
            return Err(format!(
                "must be at least {MIN_TOKEN_LENGTH} characters, got {} \
                 (e.g. the output of `openssl rand -hex 32`)",
                raw.len()
            ));
        }
        Ok(Self(raw.into()))
    }

    /// Whether `presented` is this token, in time that depends only on
    /// the lengths.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        expected.len() == presented.len() && bool::from(expected.ct_eq(presented))
    }

    /// The token itself, for a client that must send it (tests, tools).
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// What the runtime puts in every request's extensions: the configured
/// token, or none (admin endpoints off).
#[derive(Debug, Clone, Default)]
pub(crate) struct AdminGate(pub(crate) Option<AdminToken>);

/// Proof that a request carries the admin token. Take it as a handler's
/// first argument; its rejection is the 401 or 403 problem.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // No gate at all means the router was not built by the runtime:
        // treated as off, so a mistake closes the endpoint rather than
        // opening it.
        let Some(token) = parts
            .extensions
            .get::<AdminGate>()
            .and_then(|gate| gate.0.as_ref())
        else {
            return Err(disabled());
        };
        let mut values = parts.headers.get_all(AUTHORIZATION).iter();
        let presented = match (values.next(), values.next()) {
            (Some(value), None) => bearer(value),
            // Two Authorization headers are ambiguous: refuse both.
            (Some(_), Some(_)) => return Err(unauthorized(true)),
            (None, _) => None,
        };
        match presented {
            None => Err(unauthorized(false)),
            Some(presented) if token.matches(presented) => Ok(Admin),
            Some(_) => Err(unauthorized(true)),
        }
    }
}

/// The credentials of `Bearer <token>` (the scheme is case-insensitive,
/// RFC 9110 §11.1), or `None` for another scheme.
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let scheme = bytes.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = bytes.get(7..)?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// 401: no token, or the wrong one (`invalid`).
fn unauthorized(invalid: bool) -> Problem {
    let (challenge, detail) = if invalid {
        (
            r#"Bearer realm="checkout", error="invalid_token""#,
            "the bearer token is not this service's ADMIN_TOKEN",
        )
    } else {
        (
            r#"Bearer realm="checkout""#,
            "this endpoint is for operators: send Authorization: Bearer <ADMIN_TOKEN>",
        )
    };
    Problem::new(StatusCode::UNAUTHORIZED)
        .with_type("/problems/unauthorized")
        .with_title("Authentication required")
        .with_detail(detail)
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge))
}

/// 403: the admin endpoints are off because no token is configured.
fn disabled() -> Problem {
    Problem::new(StatusCode::FORBIDDEN)
        .with_type("/problems/admin-endpoints-off")
        .with_title("Admin endpoints are off")
        .with_detail(format!(
            "this endpoint is for operators and is off on this service: start it with \
             ADMIN_TOKEN set to a secret of {MIN_TOKEN_LENGTH} or more characters \
             (e.g. `openssl rand -hex 32`), then send Authorization: Bearer <ADMIN_TOKEN>"
        ))
}

/// The answers of every handler that takes [`Admin`], as documented
/// responses: list `AdminProblems` in its `#[utoipa::path(responses(...))]`.
#[derive(Debug, IntoResponses)]
pub enum AdminProblems {
    /// No `Authorization: Bearer` header, or not the `ADMIN_TOKEN`
    /// (`WWW-Authenticate: Bearer` is sent).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The service runs without `ADMIN_TOKEN`: its admin endpoints are off.
    #[response(status = 403, content_type = "application/problem+json")]
    Off(Problem),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_read_case_insensitively_and_trimmed() {
        let read = |raw: &'static str| bearer(&HeaderValue::from_static(raw)).map(<[u8]>::to_vec);
        assert_eq!(read("Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(read("bearer  abc "), Some(b"abc".to_vec()));
        assert_eq!(read("BEARER abc"), Some(b"abc".to_vec()));
        assert_eq!(read("Basic YWJj"), None);
        assert_eq!(read("Bearer"), None);
        assert_eq!(read("Bearer "), None);
        assert_eq!(read("Bearerabc"), None);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = AdminToken::parse("0123456789abcdef").expect("valid");
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeF"));
        assert!(!token.matches(b"0123456789abcde"));
        assert!(!token.matches(b"0123456789abcdef0"));
        assert!(!token.matches(b""));
    }
}
