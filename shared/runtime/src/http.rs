//! What every service's HTTP side needs, one module per job: RFC 9457
//! problem details ([`problem`]), the extractors whose every rejection is a
//! problem ([`extract`]: JSON body, query string, path), the problems for a
//! wrong route or method ([`fallback`]), the server span of a request
//! ([`trace`]), the health routes ([`health`]), and money on the wire
//! ([`amount`]). Their items are re-exported here.
//!
//! The rule it serves: whatever a client sends, the answer is a 2xx or a
//! 4xx `application/problem+json` naming what to fix — never a 5xx. A
//! dependency that is down is a 503 with `Retry-After` (see the
//! `From<sqlx::Error>` conversion of [`Problem`]); only a bug is a 500.

pub mod amount;
pub mod extract;
pub mod fallback;
pub mod health;
pub mod problem;
pub mod trace;

pub use amount::Amount;
pub use extract::{ApiJson, ApiPath, ApiQuery, MAX_BODY_BYTES};
pub use fallback::{method_not_allowed, no_such_route};
pub(crate) use health::health_openapi;
pub use health::health_routes;
pub use problem::{
    DATABASE_RETRY_AFTER, ErrorChain, FieldError, JsonBodyProblems, PROBLEM_JSON, Problem,
    ProblemResponse,
};
pub use trace::trace_request;
