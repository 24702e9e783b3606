//! The API as a client reads it: the service's OpenAPI 3.1 document,
//! generated from its handlers and types with utoipa (never written by
//! hand), served at `/openapi.json`, and a browsable reference at `/docs`.
//!
//! A service hands its routes over as a `utoipa_axum` `OpenApiRouter`, so a
//! route and its documentation are declared in one place (`routes!`). This
//! module adds the health routes' and its own two paths to the document;
//! what it does not do is decide a service's routes.

use crate::admin::{MIN_TOKEN_LENGTH, SECURITY_SCHEME};
use crate::config::ServiceInfo;
use crate::http::{
    FieldError, MAX_BODY_BYTES, PROBLEM_JSON, Problem, ProblemResponse, health_openapi,
};
use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use http::header::CONTENT_TYPE;
use std::sync::Arc;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_scalar::Scalar;

/// The document and the UI page, rendered once at start.
#[derive(Debug, Clone)]
struct Published {
    json: Arc<str>,
    html: Arc<str>,
}

fn documentation_api() -> OpenApiRouter<Published> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
}

/// The service's routes plus `/openapi.json` and `/docs`, whose document
/// covers the service's routes, the health routes and these two.
pub(crate) fn router(service: &ServiceInfo, api: OpenApiRouter) -> Router {
    let (routes, document) = api.split_for_parts();
    let own = documentation_api();
    let document = complete(service, document, own.get_openapi().clone());
    let published = Published {
        json: serde_json::to_string(&document).unwrap_or_default().into(),
        html: Scalar::new(document).title(service.binary).to_html().into(),
    };
    let (docs, _) = own.with_state(published).split_for_parts();
    routes.merge(docs)
}

/// What services refer to without routing it: the problem response and
/// its schemas (`routes!` collects only the schemas of its handlers' bodies).
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(Problem, FieldError), responses(ProblemResponse)))]
struct Shared;

fn complete(service: &ServiceInfo, mut document: OpenApi, own: OpenApi) -> OpenApi {
    document.merge(Shared::openapi());
    document.merge(health_openapi());
    document.merge(own);
    // Declared once here; operations that need it name it in their
    // `security(...)`, and only those.
    document
        .components
        .get_or_insert_default()
        .add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!(
                        "The service's `ADMIN_TOKEN` ({MIN_TOKEN_LENGTH}+ characters), as \
                         `Authorization: Bearer <token>`. Without it these operations \
                         answer 401 (with `WWW-Authenticate: Bearer`); on a service \
                         started without `ADMIN_TOKEN` they are off and answer 403."
                    )))
                    .build(),
            ),
        );
    document.info = InfoBuilder::new()
        .title(service.binary)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "Every error is `{PROBLEM_JSON}` (RFC 9457): `type`, `title`, `status`, \
             `detail`, and for validation failures `errors`, a list of `{{field, message}}`. \
             Unknown JSON fields are refused (422), bodies above {MAX_BODY_BYTES} bytes \
             are refused (413), a body that is not JSON is refused (415), an unknown \
             route is a 404 and a wrong method a 405 (with `Allow`), all as problems. \
             Operations marked with the `{SECURITY_SCHEME}` security scheme need \
             `Authorization: Bearer <ADMIN_TOKEN>` (401 without it, 403 when the service \
             has no `ADMIN_TOKEN`). Any operation may answer 503 with `Retry-After` when \
             the service's database is unavailable, it is at its bound of concurrent \
             requests, or a request is not answered within its time limit."
        )))
        .build();
    document
}

/// This document: the service's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "documentation", responses(
    (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
))]
async fn openapi_json(State(published): State<Published>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        published.json.to_string(),
    )
        .into_response()
}

/// A browsable API reference (Scalar) built from this document.
#[utoipa::path(get, path = "/docs", tag = "documentation", responses(
    (status = 200, description = "An HTML page rendering the document", content_type = "text/html"),
))]
async fn docs(State(published): State<Published>) -> Html<String> {
    Html(published.html.to_string())
}
