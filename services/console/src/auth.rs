//! Who may use the console, and which form posts it accepts.
//!
//! **Access**: the console shows every customer's orders and can replay or
//! purge dead letters and switch faults on, so it takes the same
//! `ADMIN_TOKEN` as the services' admin endpoints: as HTTP basic auth (user
//! `admin`, password the token — what a browser asks for) or as a bearer
//! token (scripts). Comparison is constant-time ([`AdminToken::matches`]).
//!
//! **Forms** (every change is a POST): a browser sends basic credentials
//! with any request to the console, including one a hostile page makes it
//! send, so each form carries a token that only the console's own pages
//! contain (one per process, random, compared in constant time), and a
//! request whose `Origin` is another site is refused outright.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use checkout_runtime::admin::AdminToken;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

/// The basic-auth user name the console expects.
pub(crate) const USER: &str = "admin";

/// The console's access check and form token.
#[derive(Debug)]
pub(crate) struct Gate {
    token: AdminToken,
    csrf: String,
}

impl Gate {
    pub(crate) fn new(token: AdminToken) -> Self {
        Self {
            token,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The form token every page's forms carry.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `authorization` carries the token, as basic or bearer.
    pub(crate) fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.token.matches(credentials.as_bytes());
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
                // Both compared, so a wrong user takes as long as a wrong password.
                let user_ok = user.ct_eq(USER.as_bytes());
                let password_ok = self.token.matches(password);
                bool::from(user_ok) & password_ok
            }
            None => false,
        }
    }

    /// Whether a form post may go ahead: its token is this process's, and
    /// it comes from no other origin than the console's own.
    pub(crate) fn allows_post(&self, form_token: &str, headers: &HeaderMap) -> bool {
        let token_ok = bool::from(form_token.as_bytes().ct_eq(self.csrf.as_bytes()));
        token_ok && same_origin(headers)
    }
}

/// A request without `Origin` (older browsers, scripts) passes; one with
/// an `Origin` must name the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority == Some(host)
}

/// Middleware: lets a request with the admin token through; answers 401
/// with a basic-auth challenge otherwise, so a browser asks for it.
pub(crate) async fn require_admin(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    if gate.admits(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                "Basic realm=\"Checkout console\", charset=\"UTF-8\"",
            ),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "The console needs the ADMIN_TOKEN: user \"admin\", password the token \
         (or Authorization: Bearer <token>).\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "console-test-token-0123456789";

    fn gate() -> Gate {
        Gate::new(AdminToken::parse(TOKEN).expect("a valid token"))
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("a header")
    }

    #[test]
    fn the_token_opens_the_console_as_basic_or_bearer() {
        let gate = gate();
        assert!(gate.admits(Some(&basic("admin", TOKEN))));
        assert!(gate.admits(Some(&HeaderValue::from_static(
            "bearer console-test-token-0123456789"
        ))));
        assert!(!gate.admits(None));
        assert!(!gate.admits(Some(&basic("root", TOKEN))));
        assert!(!gate.admits(Some(&basic("admin", "console-test-token-012345678"))));
        assert!(!gate.admits(Some(&HeaderValue::from_static("Basic !!!"))));
        assert!(!gate.admits(Some(&HeaderValue::from_static("Digest x"))));
    }

    #[test]
    fn a_form_needs_the_process_token_and_the_consoles_own_origin() {
        let gate = gate();
        let token = gate.csrf().to_owned();
        let headers = |origin: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("localhost:8084"));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            }
            headers
        };
        assert!(gate.allows_post(&token, &headers(None)));
        assert!(gate.allows_post(&token, &headers(Some("http://localhost:8084"))));
        assert!(!gate.allows_post(&token, &headers(Some("http://evil.example"))));
        assert!(!gate.allows_post(&token, &headers(Some("null"))));
        assert!(!gate.allows_post("guess", &headers(None)));
        assert_ne!(
            Gate::new(AdminToken::parse(TOKEN).expect("valid")).csrf(),
            token,
            "one per process"
        );
    }
}
