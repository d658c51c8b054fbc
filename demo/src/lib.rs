//! The demonstration's four services, wired over the real adapters:
//!
//! `gateway` (HTTP) → Kafka `orders` → `billing` (calls `fraud-check` over HTTP) → RabbitMQ
//! `invoices` → `shipping` (exchanges the expired token) → NATS JetStream `shipments` →
//! `notifier`.
//!
//! Each broker is the one its variable names (`KAFKA_BROKERS`, `AMQP_ADDR`, `NATS_URL`), or
//! without it an embedded one: librdkafka's mock cluster for Kafka, the in-memory transport for
//! RabbitMQ and NATS. `tests/pipeline.rs` runs it both ways; `src/main.rs` prints a run.

// The library is the demonstration binary's and its test's, not an API.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

mod http;
mod kafka;
mod memory;
mod nats;
mod rabbitmq;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jwt_relay::exchange::{ClientAuth, ExchangeCache};
use jwt_relay::memory::MemoryBroker;
use jwt_relay::testing::{DevSts, DevStsConfig};
use jwt_relay::verify::now_unix;
use jwt_relay::{Acceptance, AuthContext, Exchange, Guard, Rfc8693Client};
use serde_json::{Value, json};

pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The services' client credentials at the token service.
const BILLING: (&str, &str) = ("billing", "billing-secret");
const SHIPPING: (&str, &str) = ("shipping", "shipping-secret");

/// Which brokers to use (`None`: the embedded fallback) and how many orders to send.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub orders: usize,
    pub kafka_brokers: Option<String>,
    pub amqp_addr: Option<String>,
    pub nats_url: Option<String>,
}

/// What a run did.
#[derive(Debug)]
pub struct Summary {
    pub orders_sent: usize,
    /// The three asynchronous hops, in order.
    pub hops: Vec<Hop>,
    /// Invoices whose token `shipping` exchanged because it had expired.
    pub exchanged: u64,
    /// Who `fraud-check` saw, once per order: the user, and the services acting for them.
    pub fraud_checked: Vec<Identity>,
    /// Who `notifier` saw, once per order.
    pub notified: Vec<Identity>,
    /// The copies in `orders`' dead-letter topic, as read back from it.
    pub dead_letters: Vec<DeadLetter>,
    pub token_endpoint_calls: u64,
    /// `kafka`: `mock` or `broker`; `rabbitmq`: `memory` or `broker`; `nats`: `memory` or
    /// `jetstream`.
    pub transports: [(&'static str, &'static str); 3],
}

/// One hop's counts.
#[derive(Debug)]
pub struct Hop {
    pub name: String,
    pub transport: String,
    pub accepted: u64,
    pub dead_lettered: u64,
}

/// A user, and the services that acted for them (the most recent first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub actors: Vec<String>,
}

/// A dead-lettered copy: its reason headers, and whether it still carries a token.
#[derive(Debug)]
pub struct DeadLetter {
    pub kind: String,
    pub message: String,
    pub payload: String,
    pub carries_token: bool,
}

impl Summary {
    /// The demonstration's last line.
    pub fn json(&self) -> Value {
        let transports: serde_json::Map<String, Value> = self
            .transports
            .iter()
            .map(|(broker, transport)| ((*broker).to_owned(), json!(transport)))
            .collect();
        json!({
            "orders_sent": self.orders_sent,
            "orders_delivered": self.notified.len(),
            "exchanged": self.exchanged,
            "dead_lettered": self.dead_letters.len(),
            "token_endpoint_calls": self.token_endpoint_calls,
            "transports": transports,
        })
    }
}

/// Where the hop lines go, each stamped with the time since the start.
#[derive(Clone)]
pub struct Timeline {
    started: Instant,
    sink: Arc<dyn Fn(String) + Send + Sync>,
}

impl Timeline {
    pub fn new(sink: impl Fn(String) + Send + Sync + 'static) -> Self {
        Timeline {
            started: Instant::now(),
            sink: Arc::new(sink),
        }
    }

    /// A line about the run.
    pub fn say(&self, what: &str) {
        (self.sink)(format!("{:>6.2}s  {what}", self.started.elapsed().as_secs_f64()));
    }

    /// A hop event: which service, for whom, how old their token is, what happened.
    fn hop(&self, service: &str, context: &AuthContext, what: &str) {
        let age = now_unix() - context.claims().issued_at().unwrap_or_default();
        self.say(&format!(
            "{service:<11} sub={:<6} token age {age:>2}s  {what}",
            context.subject().unwrap_or("?"),
        ));
    }
}

/// Runs the whole chain once.
pub async fn run(options: Options, timeline: Timeline) -> Result<Summary, Failure> {
    let sts = DevSts::start(
        DevStsConfig::default()
            .client(BILLING.0, BILLING.1)
            .client(SHIPPING.0, SHIPPING.1),
    )
    .await?;
    // Each service trusts the token service and accepts only its own audience.
    let verifier_for = |audience: &str| sts.verifier(audience);
    let exchanger = |(client_id, secret): (&str, &str)| {
        Rfc8693Client::builder(sts.token_endpoint())
            .client_auth(ClientAuth::ClientSecretBasic {
                client_id: client_id.into(),
                client_secret: secret.into(),
            })
            .build()
            .map(|client| Arc::new(ExchangeCache::new(client)))
    };

    // The brokers first: one set explicitly but unreachable stops the run here.
    let memory = MemoryBroker::new();
    let orders = kafka::Orders::connect(options.kafka_brokers.as_deref()).await?;
    let invoices = rabbitmq::Invoices::connect(options.amqp_addr.as_deref(), &memory).await?;
    let shipments = nats::Shipments::connect(options.nats_url.as_deref(), &memory).await?;
    timeline.say(&format!(
        "transports: `{}` on {}, `{}` on {}, `{}` on {}",
        orders.topic(),
        orders.describe(),
        invoices.name(),
        invoices.describe(),
        shipments.name(),
        shipments.describe()
    ));

    let outcome = async {
        // fraud-check, and the gateway publishing each order it accepts to Kafka.
        let fraud_checked = Arc::new(Mutex::new(Vec::new()));
        let fraud_check = http::serve(http::fraud_check(
            verifier_for("fraud-check")?,
            fraud_checked.clone(),
        ))
        .await?;
        let gateway = http::serve(http::gateway(
            verifier_for("gateway")?,
            orders.producer()?,
            orders.topic().to_owned(),
            timeline.clone(),
        ))
        .await?;

        // billing: checks each order with fraud-check (exchanging the user's token for
        // fraud-check's audience), then invoices it, propagating the user's token as it is.
        let fraud = http::client(exchanger(BILLING)?, verifier_for("billing")?, &fraud_check)?;
        let invoice = invoices.publisher().await?;
        let billing = orders.consumer(
            "billing",
            Guard::new(verifier_for("billing")?),
            options.orders as u64 + 2,
        )?;
        let billing = Arc::new(billing);
        let billed = {
            let (billing, timeline) = (billing.clone(), timeline.clone());
            let to = invoices.name().to_owned();
            tokio::spawn(async move {
                billing
                    .run(
                        move |delivery: jwt_relay_kafka::Received| {
                            let (fraud, invoice, timeline, to) =
                                (fraud.clone(), invoice.clone(), timeline.clone(), to.clone());
                            async move {
                                let checked = fraud.check().await?;
                                invoice.publish(delivery.payload()).await?;
                                timeline.hop(
                                    "billing",
                                    delivery.context(),
                                    &format!("fraud-check saw {checked}; invoice → `{to}`"),
                                );
                                Ok::<(), Failure>(())
                            }
                        },
                        std::future::pending::<()>(),
                    )
                    .await
            })
        };
        orders.until_assigned(&billing).await?;

        // The user logs in: a token for the order pipeline that lives long enough for the
        // gateway and billing, not for shipping's backlog.
        let lifetime = 3 + options.orders as i64 / 100;
        let now = now_unix();
        let token = sts.mint_claims(json!({
            "iss": sts.issuer(), "sub": "alice", "aud": ["gateway", "billing", "shipping"],
            "iat": now, "exp": now + lifetime, "jti": "alice-login",
        }));
        timeline.say(&format!(
            "alice logs in: a token for gateway, billing and shipping, living {lifetime}s"
        ));
        http::place_orders(&gateway, &token, options.orders).await?;
        orders.publish_bad(&forged(&sts), b"forged order").await?;
        orders
            .publish_bad(
                &sts.mint("alice", "payroll", Duration::from_secs(60)),
                b"order for payroll",
            )
            .await?;
        timeline.say("mallory publishes a forged order, and an order for payroll, straight to Kafka");
        let billed = billed.await??;
        let dead_letters = orders.dead_letters(2).await?;
        for letter in &dead_letters {
            timeline.say(&format!(
                "billing     dead-lettered {:?} to `{}.dlq`: {} ({})",
                letter.payload,
                orders.topic(),
                letter.kind,
                letter.message
            ));
        }

        // shipping has a backlog: it starts once the user's token has expired, and exchanges
        // it (once for the whole burst) for a fresh one for itself and notifier.
        let wait = (now + lifetime + 1 - now_unix()).max(0) as u64;
        timeline.say(&format!(
            "shipping    starts in {wait}s, after alice's token has expired"
        ));
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let exchange = Exchange::new(exchanger(SHIPPING)?)
            .audience("shipping")
            .audience("notifier");
        let exchanged = Arc::new(AtomicU64::new(0));
        let shipment = shipments.publisher().await?;
        let shipped = {
            let (timeline, exchanged) = (timeline.clone(), exchanged.clone());
            let to = shipments.name().to_owned();
            invoices
                .consume(
                    Guard::builder(verifier_for("shipping")?).policy(exchange).build(),
                    options.orders as u64,
                    move |context: AuthContext, payload: Vec<u8>| {
                        let (shipment, timeline, exchanged, to) =
                            (shipment.clone(), timeline.clone(), exchanged.clone(), to.clone());
                        async move {
                            let what = if context.acceptance() == Acceptance::Exchanged {
                                exchanged.fetch_add(1, Ordering::Relaxed);
                                "the token had expired: exchanged"
                            } else {
                                "verified"
                            };
                            shipment.publish(&payload).await?;
                            timeline.hop("shipping", &context, &format!("{what}; parcel → `{to}`"));
                            Ok(())
                        }
                    },
                )
                .await?
        };

        // notifier: the original user, and who acted for them.
        let notified = Arc::new(Mutex::new(Vec::new()));
        let notifications = {
            let (timeline, notified) = (timeline.clone(), notified.clone());
            shipments
                .consume(
                    Guard::new(verifier_for("notifier")?),
                    options.orders as u64,
                    move |context: AuthContext, _payload: Vec<u8>| {
                        let (timeline, notified) = (timeline.clone(), notified.clone());
                        async move {
                            let identity = Identity::of(&context);
                            timeline.hop(
                                "notifier",
                                &context,
                                &format!(
                                    "notify {}; acted for them: {:?}",
                                    identity.subject, identity.actors
                                ),
                            );
                            notified.lock().unwrap_or_else(|p| p.into_inner()).push(identity);
                            Ok(())
                        }
                    },
                )
                .await?
        };

        let take = |list: &Mutex<Vec<Identity>>| {
            std::mem::take(&mut *list.lock().unwrap_or_else(|p| p.into_inner()))
        };
        Ok::<Summary, Failure>(Summary {
            orders_sent: options.orders,
            hops: vec![
                Hop {
                    name: format!("gateway → billing (`{}`)", orders.topic()),
                    transport: orders.describe(),
                    accepted: billed.accepted,
                    dead_lettered: billed.dead_lettered,
                },
                Hop {
                    name: format!("billing → shipping (`{}`)", invoices.name()),
                    transport: invoices.describe(),
                    accepted: shipped.accepted,
                    dead_lettered: shipped.dead_lettered,
                },
                Hop {
                    name: format!("shipping → notifier (`{}`)", shipments.name()),
                    transport: shipments.describe(),
                    accepted: notifications.accepted,
                    dead_lettered: notifications.dead_lettered,
                },
            ],
            exchanged: exchanged.load(Ordering::Relaxed),
            fraud_checked: take(&fraud_checked),
            notified: take(&notified),
            dead_letters,
            token_endpoint_calls: sts.stats().token_requests,
            transports: [
                ("kafka", orders.transport()),
                ("rabbitmq", invoices.transport()),
                ("nats", shipments.transport()),
            ],
        })
    }
    .await;

    // What this run declared on real brokers goes, whatever happened.
    orders.remove().await;
    invoices.remove().await;
    shipments.remove().await;
    sts.shutdown().await;
    outcome
}

impl Identity {
    fn of(context: &AuthContext) -> Identity {
        Identity {
            subject: context.subject().unwrap_or("?").to_owned(),
            actors: context.actors().into_iter().filter_map(|a| a.subject).collect(),
        }
    }
}

/// A genuine token of mallory's with its signature replaced.
fn forged(sts: &DevSts) -> String {
    let genuine = sts.mint("mallory", "billing", Duration::from_secs(60));
    let (signed, _) = genuine.rsplit_once('.').unwrap_or((&genuine, ""));
    format!("{signed}.{}", "A".repeat(86))
}

/// The part of a broker address that may be shown: scheme, host and port, never credentials.
fn endpoint(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(url) => format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or("?"),
            url.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => "an unparsable address".to_owned(),
    }
}

/// A name unique to this run, for what it declares on a shared broker.
fn per_run(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{base}-{:06x}",
        (nanos ^ std::process::id().rotate_left(20)) & 0xff_ffff
    )
}
