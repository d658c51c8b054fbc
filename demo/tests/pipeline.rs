//! The demonstration (`cargo run -p jwt-relay-demo`), run as a newcomer would: once with no
//! broker named (Kafka on librdkafka's mock cluster, RabbitMQ and NATS in memory), once on this
//! machine's brokers (`KAFKA_BROKERS`, `AMQP_ADDR`, `NATS_URL`, defaulting to loopback), and with
//! a named broker that does not answer.

#![allow(clippy::unwrap_used)]

use jwt_relay_demo::{Identity, Options, Summary, Timeline};

const ORDERS: usize = 12;

fn identity(subject: &str, actor: &str) -> Identity {
    Identity {
        subject: subject.to_owned(),
        actors: vec![actor.to_owned()],
    }
}

/// What the README promises a run shows.
fn check(summary: &Summary) {
    let counts: Vec<(u64, u64)> = summary
        .hops
        .iter()
        .map(|hop| (hop.accepted, hop.dead_lettered))
        .collect();
    let orders = ORDERS as u64;
    let names: Vec<&str> = summary.hops.iter().map(|hop| hop.name.as_str()).collect();
    assert!(names[0].starts_with("gateway → billing"), "{names:?}");
    assert!(names[2].starts_with("shipping → notifier"), "{names:?}");
    assert_eq!(
        counts,
        [(orders, 2), (orders, 0), (orders, 0)],
        "accepted and dead-lettered per hop: {:?}",
        summary.hops
    );
    // fraud-check saw alice through billing's exchanged token; notifier saw alice through
    // shipping's, every time.
    assert_eq!(summary.fraud_checked, vec![identity("alice", "billing"); ORDERS]);
    assert_eq!(summary.notified, vec![identity("alice", "shipping"); ORDERS]);
    assert_eq!(
        summary.exchanged, orders,
        "every invoice reached shipping after the expiry"
    );
    let mut kinds: Vec<(&str, &str)> = summary
        .dead_letters
        .iter()
        .map(|letter| (letter.kind.as_str(), letter.payload.as_str()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("BadSignature", "forged order"),
            ("InvalidAudience", "order for payroll")
        ]
    );
    assert!(summary.dead_letters.iter().all(|letter| !letter.carries_token));
    assert!(
        summary
            .dead_letters
            .iter()
            .all(|letter| !letter.message.is_empty())
    );
    // One exchange for fraud-check's audience, one for shipping's burst: not one per order.
    assert_eq!(summary.token_endpoint_calls, 2);
    let json = summary.json();
    assert_eq!(json["orders_sent"], ORDERS);
    assert_eq!(json["orders_delivered"], ORDERS);
    assert_eq!(json["dead_lettered"], 2);
}

async fn run(options: Options) -> Summary {
    let timeline = Timeline::new(|line| eprintln!("{line}"));
    jwt_relay_demo::run(
        Options {
            orders: ORDERS,
            ..options
        },
        timeline,
    )
    .await
    .unwrap()
}

fn transports(summary: &Summary) -> Vec<(&str, &str, &str)> {
    summary
        .transports
        .iter()
        .zip(&summary.hops)
        .map(|((broker, transport), hop)| {
            (
                *broker,
                *transport,
                hop.transport.split(' ').next().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demonstration_runs_with_no_broker_at_all() {
    let summary = run(Options::default()).await;
    check(&summary);
    assert_eq!(
        transports(&summary),
        [
            ("kafka", "mock", "Kafka"),
            ("rabbitmq", "memory", "the"),
            ("nats", "memory", "the")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demonstration_runs_on_this_machines_brokers() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let kafka = var("KAFKA_BROKERS", "127.0.0.1:9092");
    let amqp = var("AMQP_ADDR", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let nats = var("NATS_URL", "nats://127.0.0.1:4222");
    let first_kafka = kafka.split(',').next().unwrap_or_default().to_owned();
    let available = jwt_relay::testing::broker_available("Kafka", &first_kafka)
        & jwt_relay::testing::broker_available("RabbitMQ", &amqp)
        & jwt_relay::testing::broker_available("NATS", &nats);
    if !available {
        return;
    }
    let summary = run(Options {
        kafka_brokers: Some(kafka),
        amqp_addr: Some(amqp),
        nats_url: Some(nats),
        ..Options::default()
    })
    .await;
    check(&summary);
    assert_eq!(
        transports(&summary),
        [
            ("kafka", "broker", "Kafka"),
            ("rabbitmq", "broker", "RabbitMQ"),
            ("nats", "jetstream", "NATS")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_broker_that_does_not_answer_stops_the_run_with_its_variable() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let attempts = [
        (
            Options {
                kafka_brokers: Some(format!("127.0.0.1:{closed}")),
                ..Options::default()
            },
            "KAFKA_BROKERS",
        ),
        (
            Options {
                amqp_addr: Some(format!("amqp://guest:secret-password@127.0.0.1:{closed}/%2f")),
                ..Options::default()
            },
            "AMQP_ADDR",
        ),
        (
            Options {
                nats_url: Some(format!("nats://127.0.0.1:{closed}")),
                ..Options::default()
            },
            "NATS_URL",
        ),
    ];
    for (options, variable) in attempts {
        let error = jwt_relay_demo::run(options, Timeline::new(|_| {}))
            .await
            .expect_err("an unreachable broker that was named explicitly is an error")
            .to_string();
        assert!(error.contains(variable), "{variable}: {error}");
        assert!(error.contains("no "), "{variable}: {error}");
        assert!(!error.contains("secret-password"), "credentials shown: {error}");
    }
}
