//! Extractors whose every rejection is a [`Problem`]: a JSON body, a query
//! string, path parameters — each naming the field to fix.

use super::{FieldError, Problem};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use serde::de::DeserializeOwned;

/// The largest request body any service reads (64 KiB: an order of 50
/// lines is a few KiB). A larger one is refused with a 413 problem before
/// it is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body. Every rejection is a [`Problem`]: 415 without a
/// JSON content type, 413 above [`MAX_BODY_BYTES`], 400 for malformed
/// JSON, and 422 for JSON of the wrong shape — naming the field
/// (`items[0].quantity`), as a validation problem does.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("the body must be JSON, sent with content-type: application/json"));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                Problem::new(rejection.status()).with_detail(rejection.body_text())
            })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&body);
        let malformed = |error: &serde_json::Error| {
            Problem::new(StatusCode::BAD_REQUEST)
                .with_type("/problems/malformed-json")
                .with_title("The request body is not valid JSON")
                .with_detail(error.to_string())
        };
        let value = match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(value) => value,
            Err(error) if error.inner().is_data() => {
                return Err(shape_problem(
                    "The request body does not have the expected shape",
                    &error.path().to_string(),
                    error.inner(),
                ));
            }
            Err(error) => return Err(malformed(error.inner())),
        };
        // Trailing characters after the value make the body malformed too.
        deserializer.end().map_err(|error| malformed(&error))?;
        Ok(Self(value))
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(Ok(value)) = headers.get(CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// A 422 for a value serde refused at `path` (`.` is the whole value).
fn shape_problem(title: &str, path: &str, error: &dyn std::fmt::Display) -> Problem {
    let field = if path == "." { "body" } else { path };
    Problem::validation(vec![FieldError::new(field, error.to_string())]).with_title(title)
}

/// A query string. Every rejection is a 422 validation [`Problem`] naming
/// the parameter (unknown parameters are refused when `T` denies them).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|error| {
                let path = error.path().to_string();
                let field = if path == "." { "query" } else { path.as_str() };
                Problem::validation(vec![FieldError::new(field, error.inner().to_string())])
                    .with_title("The query string is not valid")
            })
    }
}

/// Path parameters. A rejection (a parameter that is not valid UTF-8 once
/// percent-decoded, or not of type `T`) is a 400 [`Problem`]; handlers
/// that take a `String` decide themselves what a malformed id means.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection: PathRejection| {
                Problem::new(StatusCode::BAD_REQUEST).with_detail(rejection.body_text())
            })
    }
}
