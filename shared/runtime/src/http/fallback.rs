//! The answers for a route that does not exist, or a method a route does
//! not take: problems, like every other error.

use super::Problem;
use axum::extract::Request;
use http::StatusCode;

/// The fallback for routes that do not exist: a 404 problem.
pub async fn no_such_route(request: Request) -> Problem {
    Problem::new(StatusCode::NOT_FOUND)
        .with_type("/problems/no-such-route")
        .with_detail(format!(
            "no route for {} {}",
            request.method(),
            request.uri().path()
        ))
}

/// The fallback for a route that exists but not with this method: a 405
/// problem (axum keeps the `Allow` header listing the methods there are).
pub async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED).with_detail(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}
