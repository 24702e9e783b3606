//! `checkoutctl dlq`: a service's dead letters, with the functions of
//! [`crate::dlq`].

use super::render::{one_line, or_dash};
use crate::dlq::header_text;
use crate::dlq::{self, DeadLetter, mask_card_tokens};
use anyhow::{Context as _, bail};
use checkout_events::{SUBSCRIPTIONS, Subscription};
use checkout_messaging::{QueueState, Topology, connect};
use clap::{Args, Subcommand};
use lapin::Connection;
use lapin::types::ShortString;
use std::io::Write;

/// What every `dlq` command needs from the global options.
#[derive(Debug)]
pub(super) struct Options<'a> {
    pub(super) amqp_url: &'a str,
    pub(super) namespace: &'a str,
    pub(super) allow_legacy: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Service {
    /// The service whose dead letters to work on: order, payment, inventory, email.
    #[arg(long)]
    pub(crate) service: String,
    /// For `replay`: the routing keys bound to the service's queue,
    /// comma-separated, for a deployment whose bindings are not the
    /// checkout's own (by default they come from the checkout's subscriptions).
    #[arg(long, value_delimiter = ',')]
    routing_keys: Option<Vec<String>>,
}

impl Service {
    /// The service's subscription: its routing keys as given, else the
    /// checkout's; a service in neither is refused.
    pub(crate) fn subscription(&self) -> anyhow::Result<Subscription> {
        if let Some(keys) = &self.routing_keys {
            // Leaked once per run of a short-lived command.
            let keys: Vec<&'static str> = keys
                .iter()
                .map(|key| &*Box::leak(key.clone().into_boxed_str()))
                .collect();
            return Ok(Subscription {
                service: Box::leak(self.service.clone().into_boxed_str()),
                routing_keys: Box::leak(keys.into_boxed_slice()),
            });
        }
        match SUBSCRIPTIONS.iter().find(|s| s.service == self.service) {
            Some(subscription) => Ok(*subscription),
            None => {
                let known: Vec<&str> = SUBSCRIPTIONS.iter().map(|s| s.service).collect();
                bail!(
                    "unknown service {:?}: one of {} (or give its --routing-keys)",
                    self.service,
                    known.join(", ")
                )
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Dlq {
    /// One line per dead letter: id, type, reason, attempts, time, route, error.
    List {
        #[command(flatten)]
        service: Service,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Everything about one dead letter: headers and body.
    Show {
        #[command(flatten)]
        service: Service,
        /// Its message id.
        message_id: String,
    },
    /// Send dead letters back to the queue of the service that failed them.
    Replay {
        #[command(flatten)]
        service: Service,
        /// The message id to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_id: Option<String>,
        /// Replay every dead letter of the service.
        #[arg(long)]
        all: bool,
    },
    /// Delete every dead letter of the service.
    Purge {
        #[command(flatten)]
        service: Service,
        /// Confirm: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// One `dlq` command on its broker connection.
struct Session<'a> {
    connection: Connection,
    topology: Topology,
    allow_legacy: bool,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

/// Runs `action` against the broker of `options`.
pub(super) async fn run(
    options: &Options<'_>,
    action: Dlq,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let topology = Topology::new(options.namespace)?;
    let connection = connect(options.amqp_url, "checkoutctl")
        .await
        .context("cannot connect to the broker (AMQP_URL)")?;
    let mut session = Session {
        connection,
        topology,
        allow_legacy: options.allow_legacy,
        out,
        err,
    };
    let done = match action {
        Dlq::List { service, limit } => session.list(&service, limit).await,
        Dlq::Show {
            service,
            message_id,
        } => session.show(&service, &message_id).await,
        Dlq::Replay {
            service,
            message_id,
            all,
        } => session.replay(&service, message_id, all).await,
        Dlq::Purge { service, yes } => session.purge(&service, yes).await,
    };
    let _ = session
        .connection
        .close(200, ShortString::from("done"))
        .await;
    done
}

impl Session<'_> {
    async fn list(&mut self, service: &Service, limit: usize) -> anyhow::Result<()> {
        let queue = self.readable_queue(&service.service).await?;
        let channel = self.connection.create_channel().await?;
        let letters = dlq::peek(&channel, &queue, limit).await?;
        let work_queue = self.topology.queue(&service.service);
        writeln!(
            self.out,
            "{:<36}  {:<18}  {:<9}  {:>8}  {:<24}  {:<20}  ERROR",
            "MESSAGE ID", "TYPE", "REASON", "ATTEMPTS", "FAILED AT", "ROUTING KEY"
        )?;
        for l in &letters {
            let route = l.original_route(&work_queue).map(|r| r.routing_key);
            writeln!(
                self.out,
                "{:<36}  {:<18}  {:<9}  {:>8}  {:<24}  {:<20}  {}",
                or_dash(&l.message_id),
                or_dash(&l.event_type),
                or_dash(&l.reason),
                l.attempts.map_or("-".to_owned(), |n| n.to_string()),
                or_dash(&l.failed_at),
                or_dash(&route),
                one_line(&mask_card_tokens(l.error.as_deref().unwrap_or("-")), 100),
            )?;
        }
        writeln!(self.out, "{} dead letter(s)", letters.len())?;
        Ok(())
    }

    async fn show(&mut self, service: &Service, message_id: &str) -> anyhow::Result<()> {
        let queue = self.readable_queue(&service.service).await?;
        let channel = self.connection.create_channel().await?;
        let Some(letter) = dlq::find(&channel, &queue, message_id).await? else {
            bail!("no dead letter {message_id} in {queue}");
        };
        show(self.out, &letter, &self.topology.queue(&service.service))?;
        Ok(())
    }

    async fn replay(
        &mut self,
        service: &Service,
        message_id: Option<String>,
        all: bool,
    ) -> anyhow::Result<()> {
        let subscription = service.subscription()?;
        self.readable_queue(subscription.service).await?;
        let channel = self.connection.create_channel().await?;
        let outcome = dlq::replay(&channel, &self.topology, &subscription, |l| {
            all || l.message_id == message_id
        })
        .await?;
        writeln!(
            self.out,
            "replayed {}, left {} in the queue (replayed to {})",
            outcome.replayed,
            outcome.left,
            self.topology.queue(subscription.service)
        )?;
        for not in &outcome.not_replayed {
            writeln!(
                self.out,
                "  not replayed {}: {}",
                or_dash(&not.message_id),
                not.why
            )?;
        }
        if !all && outcome.replayed == 0 {
            bail!("nothing replayed: no replayable dead letter with that id");
        }
        Ok(())
    }

    async fn purge(&mut self, service: &Service, yes: bool) -> anyhow::Result<()> {
        if !yes {
            bail!(
                "purging deletes every dead letter of {}; add --yes to confirm",
                service.service
            );
        }
        let channel = self.connection.create_channel().await?;
        let queue = self.topology.dead_letter_queue(&service.service);
        let purged = dlq::purge(&channel, &queue).await?;
        writeln!(self.out, "purged {purged} dead letter(s)")?;
        Ok(())
    }

    /// The service's dead-letter queue, once it is known to exist and to
    /// have the delivery limit that makes looking at it safe.
    async fn readable_queue(&mut self, service: &str) -> anyhow::Result<String> {
        let topology = &self.topology;
        let queue = topology.dead_letter_queue(service);
        match topology
            .check_dead_letter_queue(&self.connection, service)
            .await?
        {
            QueueState::Current => {}
            QueueState::Missing => bail!(
                "there is no dead-letter queue {queue}: has the {service} service started in namespace {:?}?",
                topology.exchange().trim_end_matches(".events")
            ),
            QueueState::Legacy(broker) if self.allow_legacy => {
                writeln!(
                    self.err,
                    "checkoutctl: warning: {queue} is a legacy queue ({broker}); reading it anyway"
                )?;
            }
            QueueState::Legacy(broker) => bail!(
                "{queue} was declared by an older version without the delivery limit ({broker}). \
                 On RabbitMQ 4 each look uses up one of its 20 deliveries and the broker then \
                 deletes the dead letter. Replace the queue first (README: Dead letters), or pass \
                 --allow-legacy-queue on RabbitMQ 3"
            ),
        }
        Ok(queue)
    }
}

/// Everything about one dead letter, card tokens masked.
fn show(out: &mut dyn Write, letter: &DeadLetter, work_queue: &str) -> std::io::Result<()> {
    let route = letter.original_route(work_queue);
    writeln!(out, "message id:    {}", or_dash(&letter.message_id))?;
    writeln!(out, "type:          {}", or_dash(&letter.event_type))?;
    writeln!(out, "reason:        {}", or_dash(&letter.reason))?;
    writeln!(out, "handler:       {}", or_dash(&letter.handler))?;
    writeln!(
        out,
        "attempts:      {}",
        letter.attempts.map_or("-".to_owned(), |n| n.to_string())
    )?;
    writeln!(out, "failed at:     {}", or_dash(&letter.failed_at))?;
    writeln!(
        out,
        "original:      {} / {}",
        route.as_ref().map_or("-", |r| r.exchange.as_str()),
        route.as_ref().map_or("-", |r| r.routing_key.as_str())
    )?;
    writeln!(
        out,
        "error:         {}",
        mask_card_tokens(letter.error.as_deref().unwrap_or("-"))
    )?;
    writeln!(out, "headers:")?;
    for (key, value) in letter.headers.inner() {
        writeln!(
            out,
            "  {key}: {}",
            one_line(&mask_card_tokens(&header_text(value)), 300)
        )?;
    }
    writeln!(out, "body:")?;
    writeln!(out, "{}", letter.masked_body())
}
