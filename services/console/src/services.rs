//! The four services' HTTP APIs, read with the admin token. Every call
//! answers either what the service said or an [`Unavailable`] naming the
//! service and why (no answer, an error status, a body that does not
//! parse): a page shows that in place of the part it could not fetch, so a
//! service that is down never turns a page into a 500.

use crate::api::{Email, Faults, Order, OrderPage, Payment, Problem, Reservation, SwitchChange};
use crate::settings::ServiceUrls;
use checkout_runtime::admin::AdminToken;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

/// The services the console reads, by their short names.
pub(crate) const NAMES: [&str; 4] = ["order", "payment", "inventory", "email"];

/// How long one call may take: a page makes several, and a service that
/// hangs must not hold the page past the console's own request timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A part of a page the console could not fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable {
    /// The service asked.
    pub(crate) service: &'static str,
    /// What went wrong, for the person reading the page.
    pub(crate) detail: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.service, self.detail)
    }
}

/// What a service answered, or why there is no answer.
pub(crate) type Answer<T> = Result<T, Unavailable>;

/// The HTTP client of the four services.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    http: reqwest::Client,
    urls: ServiceUrls,
    token: AdminToken,
}

impl Services {
    pub(crate) fn new(urls: ServiceUrls, token: AdminToken) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        Ok(Self { http, urls, token })
    }

    /// A page of orders, newest first.
    pub(crate) async fn orders(
        &self,
        status: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Answer<OrderPage> {
        // Built before the await: the serializer is not `Send`.
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            if let Some(status) = status {
                query.append_pair("status", status);
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
            query.finish()
        };
        self.get("order", &format!("/orders?{query}")).await
    }

    /// One order, or `None` if the Order service does not know it.
    pub(crate) async fn order(&self, id: Uuid) -> Answer<Option<Order>> {
        match self.get("order", &format!("/orders/{id}")).await {
            Ok(order) => Ok(Some(order)),
            Err(unavailable) if unavailable.detail.starts_with("404") => Ok(None),
            Err(unavailable) => Err(unavailable),
        }
    }

    /// The order's payment (zero or one).
    pub(crate) async fn payments(&self, id: Uuid) -> Answer<Vec<Payment>> {
        self.get("payment", &format!("/payments?order_id={id}"))
            .await
    }

    /// The order's reservation (zero or one).
    pub(crate) async fn reservations(&self, id: Uuid) -> Answer<Vec<Reservation>> {
        self.get("inventory", &format!("/reservations?order_id={id}"))
            .await
    }

    /// The mails about the order.
    pub(crate) async fn emails(&self, id: Uuid) -> Answer<Vec<Email>> {
        self.get("email", &format!("/emails?order_id={id}")).await
    }

    /// Orders by status, as the Order service counts them in its table for
    /// `/metrics` (`checkout_orders{status}`): one exact count, where
    /// paging through `GET /orders` would cost a request per hundred orders.
    pub(crate) async fn order_counts(&self) -> Answer<Vec<(String, u64)>> {
        let text = self
            .send("order", self.http.get(self.url("order", "/metrics")?))
            .await?;
        Ok(crate::orders::counts_from_metrics(&text))
    }

    /// A service's fault switches.
    pub(crate) async fn faults(&self, service: &'static str) -> Answer<Faults> {
        self.get(service, "/faults").await
    }

    /// Changes one of a service's fault switches; answers the switches as
    /// they are now.
    pub(crate) async fn set_fault(
        &self,
        service: &'static str,
        change: &SwitchChange,
    ) -> Answer<Faults> {
        let request = self.http.put(self.url(service, "/faults")?).json(change);
        let text = self.send(service, request).await?;
        parse(service, &text)
    }

    async fn get<T: DeserializeOwned>(&self, service: &'static str, path: &str) -> Answer<T> {
        let text = self
            .send(service, self.http.get(self.url(service, path)?))
            .await?;
        parse(service, &text)
    }

    fn url(&self, service: &'static str, path: &str) -> Answer<String> {
        let base = self.urls.of(service).ok_or_else(|| Unavailable {
            service,
            detail: "not a service of the checkout".to_owned(),
        })?;
        Ok(format!("{base}{path}"))
    }

    /// Sends `request` with the admin token; a non-2xx answer becomes an
    /// [`Unavailable`] that starts with its status code and quotes its
    /// problem, if it has one.
    async fn send(
        &self,
        service: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Answer<String> {
        let unavailable = |detail: String| Unavailable { service, detail };
        let response = request
            .bearer_auth(self.token.secret())
            .send()
            .await
            .map_err(|error| unavailable(format!("no answer ({})", root_cause(&error))))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| unavailable(format!("the answer broke off ({error})")))?;
        if status.is_success() {
            return Ok(text);
        }
        let problem = serde_json::from_str::<Problem>(&text).unwrap_or_default();
        Err(unavailable(format!("{} {problem}", status.as_u16())))
    }
}

fn parse<T: DeserializeOwned>(service: &'static str, text: &str) -> Answer<T> {
    serde_json::from_str(text).map_err(|error| Unavailable {
        service,
        detail: format!("an answer the console cannot read ({error})"),
    })
}

/// The innermost cause: "Connection refused" says more than reqwest's
/// "error sending request for url (…)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
