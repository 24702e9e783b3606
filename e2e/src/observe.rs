//! What a test can ask a running system — the HTTP reads of each service
//! and of the trace receiver — and the waits built on them.
//!
//! The reads return what the service said, right now. The `wait_for_*`
//! helpers poll a read until the answer is the expected one, because in an
//! event-driven system "right now" is usually "not yet".

use crate::api::{Accepted, CatalogEntry, Email, Order, OrderPage, Payment, Product, Reservation};
use crate::otlp::{ReceivedSpan, tree};
use crate::poll::{Probe, eventually};
use crate::{Service, System};
use anyhow::Context as _;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use uuid::Uuid;

impl System {
    /// `POST /orders` with `body`, returning the raw response.
    pub async fn post_order(&self, body: &serde_json::Value) -> anyhow::Result<reqwest::Response> {
        let url = self.url(Service::Order, "/orders");
        self.http()
            .post(&url)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))
    }

    /// `POST /orders`, requiring `202 Accepted`; returns the new order's id.
    pub async fn place_order(&self, body: &serde_json::Value) -> anyhow::Result<Uuid> {
        let response = self.post_order(body).await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(
            status == reqwest::StatusCode::ACCEPTED,
            "POST /orders answered {status}, not 202: {text}"
        );
        let accepted: Accepted = serde_json::from_str(&text)
            .with_context(|| format!("POST /orders answered an unexpected body: {text}"))?;
        Ok(accepted.id)
    }

    /// `GET /orders/{id}`.
    pub async fn order(&self, id: Uuid) -> anyhow::Result<Order> {
        self.get(Service::Order, &format!("/orders/{id}")).await
    }

    /// `GET /catalog`: the Order service's copy of the catalog.
    pub async fn catalog(&self) -> anyhow::Result<Vec<CatalogEntry>> {
        self.get(Service::Order, "/catalog").await
    }

    /// `GET /products`: Inventory's catalog and stock.
    pub async fn products(&self) -> anyhow::Result<Vec<Product>> {
        self.get(Service::Inventory, "/products").await
    }

    /// One product of `GET /products`.
    pub async fn product(&self, sku: &str) -> anyhow::Result<Product> {
        self.products()
            .await?
            .into_iter()
            .find(|product| product.sku == sku)
            .with_context(|| format!("GET /products does not list {sku}"))
    }

    /// `GET /reservations?order_id=` (admin).
    pub async fn reservations(&self, order_id: Uuid) -> anyhow::Result<Vec<Reservation>> {
        let path = format!("/reservations?order_id={order_id}");
        self.get_as_admin(Service::Inventory, &path).await
    }

    /// `GET /payments?order_id=` (admin).
    pub async fn payments(&self, order_id: Uuid) -> anyhow::Result<Vec<Payment>> {
        let path = format!("/payments?order_id={order_id}");
        self.get_as_admin(Service::Payment, &path).await
    }

    /// `GET /emails?order_id=` (admin).
    pub async fn emails(&self, order_id: Uuid) -> anyhow::Result<Vec<Email>> {
        let path = format!("/emails?order_id={order_id}");
        self.get_as_admin(Service::Email, &path).await
    }

    /// `GET /orders?limit=100` (admin): the newest orders, newest first.
    pub async fn list_orders(&self) -> anyhow::Result<OrderPage> {
        self.get_as_admin(Service::Order, "/orders?limit=100").await
    }

    /// GETs `path` of `service` and parses the JSON; any status but 2xx is
    /// an error quoting the body.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
    ) -> anyhow::Result<T> {
        self.fetch(service, path, None).await
    }

    /// [`get`](Self::get) as an operator: with `Authorization: Bearer
    /// <ADMIN_TOKEN>`, which the admin endpoints need.
    pub async fn get_as_admin<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
    ) -> anyhow::Result<T> {
        self.fetch(service, path, Some(self.admin_authorization()))
            .await
    }

    async fn fetch<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        authorization: Option<String>,
    ) -> anyhow::Result<T> {
        let url = self.url(service, path);
        let mut request = self.http().get(&url);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {text}");
        serde_json::from_str(&text)
            .with_context(|| format!("GET {url} answered an unexpected body: {text}"))
    }

    /// [`eventually`] with this system's timeout.
    pub async fn eventually<T>(
        &self,
        what: &str,
        probe: impl AsyncFnMut() -> anyhow::Result<Probe<T>>,
    ) -> anyhow::Result<T> {
        eventually(what, self.timeout(), probe).await
    }

    /// Polls `GET /orders/{id}` until the order is CONFIRMED or CANCELLED.
    /// It does not say which: the test asserts that, with the whole order
    /// in the message.
    pub async fn wait_for_final_status(&self, id: Uuid) -> anyhow::Result<Order> {
        self.eventually(
            &format!("order {id} to be CONFIRMED or CANCELLED"),
            async || {
                let order = self.order(id).await?;
                Ok(if order.is_final() {
                    Probe::Done(order)
                } else {
                    Probe::not_yet(order)
                })
            },
        )
        .await
    }

    /// Polls `GET /reservations?order_id=` until the order's reservation
    /// has `status`.
    pub async fn wait_for_reservation(
        &self,
        order_id: Uuid,
        status: &str,
    ) -> anyhow::Result<Reservation> {
        self.wait_for_reservation_in(order_id, &[status]).await
    }

    /// Polls `GET /reservations?order_id=` until the order's reservation
    /// has one of `statuses` (a cancelled order ends RELEASED, or VOIDED
    /// when Inventory saw the cancel before the order).
    pub async fn wait_for_reservation_in(
        &self,
        order_id: Uuid,
        statuses: &[&str],
    ) -> anyhow::Result<Reservation> {
        self.wait_for_one(
            &format!("a reservation {statuses:?} for order {order_id}"),
            async || self.reservations(order_id).await,
            |reservation| statuses.contains(&reservation.status.as_str()),
        )
        .await
    }

    /// Polls `GET /payments?order_id=` until a payment has `status`.
    pub async fn wait_for_payment(&self, order_id: Uuid, status: &str) -> anyhow::Result<Payment> {
        self.wait_for_one(
            &format!("a {status} payment for order {order_id}"),
            async || self.payments(order_id).await,
            |payment| payment.status == status,
        )
        .await
    }

    /// Polls `GET /emails?order_id=` until an email of `kind` was recorded.
    pub async fn wait_for_email(&self, order_id: Uuid, kind: &str) -> anyhow::Result<Email> {
        self.wait_for_one(
            &format!("a {kind} email for order {order_id}"),
            async || self.emails(order_id).await,
            |email| email.kind == kind,
        )
        .await
    }

    /// Polls `list` until one of its items `matches`; returns that item.
    async fn wait_for_one<T: Clone + Debug>(
        &self,
        what: &str,
        list: impl AsyncFn() -> anyhow::Result<Vec<T>>,
        matches: impl Fn(&T) -> bool,
    ) -> anyhow::Result<T> {
        self.eventually(what, async || {
            let items = list().await?;
            Ok(match items.iter().find(|item| matches(item)) {
                Some(item) => Probe::Done(item.clone()),
                None => Probe::not_yet(items),
            })
        })
        .await
    }

    /// Polls the trace receiver until the spans of `trace_id` satisfy
    /// `complete` (spans arrive in batches, from four processes, in no
    /// particular order). On timeout the error lists what did arrive.
    pub async fn spans_for_trace(
        &self,
        trace_id: &str,
        what: &str,
        complete: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        self.eventually(&format!("trace {trace_id}: {what}"), async || {
            let spans = self.otlp().trace(trace_id);
            Ok(if complete(&spans) {
                Probe::Done(spans)
            } else {
                Probe::NotYet(describe(&spans))
            })
        })
        .await
    }
}

/// What arrived of a trace, for error messages.
fn describe(spans: &[ReceivedSpan]) -> String {
    format!("{} spans:\n{}", spans.len(), tree(spans))
}
