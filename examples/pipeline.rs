//! The mission in one process: a user's token crosses three asynchronous
//! hops (orders → invoices → shipments), expires while `shipping` works
//! through its backlog, is exchanged at the development token service for a
//! fresh one with an `act` chain, and reaches `notifier` with the user's
//! identity intact. A forged order and one meant for another audience end
//! in the dead-letter queue with their reasons.
//!
//! `cargo run --release --example pipeline [-- --orders N]`
//!
//! Every hop runs on the in-memory transport here; the broker adapters run
//! the same Propagator and Guard over Kafka, RabbitMQ and NATS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwt_relay::memory::{Delivery, MemoryBroker, MemoryConsumer, MemoryPublisher};
use jwt_relay::testing::{DevSts, DevStsConfig};
use jwt_relay::{
    Acceptance, AuthContext, Exchange, ExchangeCache, Guard, Headers, Issuer, Propagator, Rfc8693Client,
    Verifier, now_unix,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

/// How long the user's token lives: long enough for the first two hops.
const USER_TOKEN_TTL: Duration = Duration::from_secs(2);

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let orders = orders_from_args()?;
    let metrics = PrometheusBuilder::new().install_recorder()?;
    jwt_relay::observe::describe();
    let started = Instant::now();
    let sts = DevSts::start(DevStsConfig::default().client("shipping", "shipping-secret")).await?;
    let broker = MemoryBroker::new();

    // Each service trusts the token service and accepts only its own audience.
    let verifier_for = |audience: &str| {
        Verifier::builder()
            .issuer(
                Issuer::new(sts.issuer())
                    .audience(audience)
                    .jwks_url(sts.jwks_url())
                    .leeway(Duration::ZERO),
            )
            .build()
    };
    let event = |service: &str, ctx: &AuthContext, what: &str| {
        let age = now_unix() - ctx.claims().issued_at().unwrap_or_default();
        println!(
            "{:>6.2}s  {service:<9} sub={:<6} token age {age:>2}s  {what}",
            started.elapsed().as_secs_f64(),
            ctx.subject().unwrap_or("?"),
        );
    };

    // The user's token, as the HTTP edge verified it: meant for the whole order pipeline.
    let user_token = sts.mint("alice", "billing", USER_TOKEN_TTL);
    let user = verifier_for("billing")?.verify(&user_token).await?;
    let gateway = MemoryPublisher::new(broker.clone(), Propagator::default());
    for n in 0..orders {
        jwt_relay::scope(
            user.clone(),
            gateway.publish("orders", Headers::new(), format!("order {n}"), None),
        )
        .await?;
    }
    event(
        "gateway",
        &user,
        &format!("published {orders} orders to `orders`"),
    );
    publish_bad_orders(&broker, &sts);

    // billing: verifies, then publishes downstream without touching headers.
    let invoices = MemoryPublisher::new(broker.clone(), Propagator::default());
    let billing = MemoryConsumer::new(broker.clone(), "orders", Guard::new(verifier_for("billing")?));
    let billed = billing
        .run_until_idle(|d: Delivery| {
            let invoices = invoices.clone();
            async move {
                event("billing", d.context(), "verified; invoice → `invoices`");
                invoices
                    .publish("invoices", Headers::new(), d.payload().to_vec(), None)
                    .await
                    .map(drop)
            }
        })
        .await?;

    // shipping has a backlog: by the time it looks, the user's token has expired.
    let expired_at = user.claims().expires_at().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs((expired_at - now_unix() + 1).max(0) as u64)).await;
    let exchanger = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(jwt_relay::ClientAuth::ClientSecretBasic {
            client_id: "shipping".into(),
            client_secret: "shipping-secret".into(),
        })
        .build()?;
    // One exchange for the whole burst: the cache is single-flight.
    let exchange = Exchange::new(Arc::new(ExchangeCache::new(exchanger)))
        .audience("billing")
        .audience("notifier");
    let shipments = MemoryPublisher::new(broker.clone(), Propagator::default());
    let shipping = MemoryConsumer::new(
        broker.clone(),
        "invoices",
        Guard::builder(verifier_for("billing")?).policy(exchange).build(),
    );
    let shipped = shipping
        .run_until_idle(|d: Delivery| {
            let shipments = shipments.clone();
            async move {
                let what = match d.context().acceptance() {
                    Acceptance::Exchanged => "token had expired: exchanged; parcel → `shipments`",
                    _ => "verified; parcel → `shipments`",
                };
                event("shipping", d.context(), what);
                shipments
                    .publish("shipments", Headers::new(), d.payload().to_vec(), None)
                    .await
                    .map(drop)
            }
        })
        .await?;

    // notifier: the original user, and who acted for them.
    let notifier = MemoryConsumer::new(broker.clone(), "shipments", Guard::new(verifier_for("notifier")?));
    let notified = notifier
        .run_until_idle(|d: Delivery| async move {
            let actors: Vec<_> = d
                .context()
                .actors()
                .into_iter()
                .filter_map(|a| a.subject)
                .collect();
            event(
                "notifier",
                d.context(),
                &format!("notify the user; acted for them: {actors:?}"),
            );
            Ok::<(), String>(())
        })
        .await?;

    let dead = broker.dead_letters("orders");
    println!();
    for letter in &dead {
        let reason = |name| {
            letter
                .headers
                .get(name)
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        };
        println!(
            "dead-lettered on `orders`: {} ({}) — token header kept: {}",
            reason(jwt_relay::REASON_KIND),
            reason(jwt_relay::REASON_MESSAGE),
            letter.headers.get("authorization").is_some()
        );
    }
    let calls = sts.stats().token_requests;
    println!();
    println!("| hop | transport | accepted | dead-lettered |");
    println!("|---|---|---|---|");
    println!(
        "| gateway → billing (`orders`) | memory | {} | {} |",
        billed.accepted, billed.dead_lettered
    );
    println!(
        "| billing → shipping (`invoices`) | memory | {} | {} |",
        shipped.accepted, shipped.dead_lettered
    );
    println!(
        "| shipping → notifier (`shipments`) | memory | {} | {} |",
        notified.accepted, notified.dead_lettered
    );
    println!("token endpoint calls: {calls} for {orders} orders");
    println!();
    println!("metrics (what a Prometheus scrape would see; `--example metrics` serves them):");
    let counters = [
        "jwt_relay_messages_total",
        "jwt_relay_exchanges_total",
        "jwt_relay_jwks_fetches_total",
    ];
    for line in metrics.render().lines() {
        if counters.iter().any(|name| line.starts_with(name)) {
            println!("  {line}");
        }
    }
    println!(
        "{}",
        json!({
            "orders_sent": orders,
            "orders_delivered": notified.accepted,
            "exchanged": shipped.accepted,
            "dead_lettered": dead.len(),
            "token_endpoint_calls": calls,
            "transports": {"kafka": "memory", "rabbitmq": "memory", "nats": "memory"},
        })
    );
    sts.shutdown().await;
    Ok(())
}

/// A forged order (signed by a key nobody trusts) and one whose token is
/// for another service, published raw.
fn publish_bad_orders(broker: &MemoryBroker, sts: &DevSts) {
    let forged = {
        let genuine = sts.mint("mallory", "billing", Duration::from_secs(60));
        let (signed, _) = genuine.rsplit_once('.').unwrap_or((&genuine, ""));
        format!("{signed}.{}", "A".repeat(86))
    };
    let elsewhere = sts.mint("alice", "payroll", Duration::from_secs(60));
    for (token, what) in [(forged, "forged order"), (elsewhere, "order for payroll")] {
        let mut headers = Headers::new();
        headers.append("Authorization", format!("Bearer {token}"));
        broker.publish("orders", headers, what);
    }
}

fn orders_from_args() -> Result<usize, Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(20),
        [flag, n] if flag == "--orders" => Ok(n.parse()?),
        _ => Err("usage: pipeline [--orders N]".into()),
    }
}
