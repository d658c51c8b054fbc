//! `--instances`: many consumer instances on one destination (issue 25). `k` = 1, 2 and 3
//! jwt-relay consumers, each with its own client and connection, all in this process, share
//! `--messages` messages published beforehand (one token, each payload numbered): a Kafka
//! consumer group on a topic of [`PARTITIONS`](crate::kafka::PARTITIONS) partitions, one
//! RabbitMQ queue, one durable JetStream pull consumer. Each run starts the `k` instances at
//! once and ends when every message was handled; the handlers count what they get, so that a
//! message lost or handled twice shows.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use jwt_relay::{Guard, RunReport};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::measure::{Progress, median, payload_number, rate};
use crate::tokens::{Keys, PATIENCE, Scenario};
use crate::{Broker, Failure, emit};

/// How many instances share the destination, in turn.
pub(crate) const INSTANCES: [usize; 3] = [1, 2, 3];

/// One instance's run, spawned on the runtime: what its consumer's `run` returned.
pub(crate) type Running = Pin<Box<dyn Future<Output = Result<RunReport, Failure>> + Send>>;

/// What the handlers of one run's instances got, counted as they get it.
#[derive(Debug)]
pub(crate) struct Tally {
    /// How many times each message was handled, by its number.
    seen: Vec<AtomicU32>,
    handled: AtomicUsize,
    distinct: AtomicUsize,
    /// Handled messages without a number of this run.
    foreign: AtomicUsize,
    /// Each instance's first and latest message handled.
    by_instance: Vec<Progress>,
    /// The first and the latest message handled.
    progress: Progress,
    started: Instant,
    /// When each instance handled its first message, and how many were handled before.
    joined: Vec<OnceLock<(Instant, usize)>>,
    /// When every message had been handled at least once.
    all: OnceLock<Instant>,
    done: watch::Sender<bool>,
}

impl Tally {
    fn new(messages: usize, instances: usize) -> Arc<Tally> {
        Arc::new(Tally {
            seen: (0..messages).map(|_| AtomicU32::new(0)).collect(),
            handled: AtomicUsize::new(0),
            distinct: AtomicUsize::new(0),
            foreign: AtomicUsize::new(0),
            by_instance: (0..instances).map(|_| Progress::default()).collect(),
            progress: Progress::default(),
            started: Instant::now(),
            joined: (0..instances).map(|_| OnceLock::new()).collect(),
            all: OnceLock::new(),
            done: watch::channel(false).0,
        })
    }

    /// Instance `instance`'s handler got a message with this payload.
    pub(crate) fn handled(&self, instance: usize, payload: &[u8]) {
        self.progress.tick();
        let before = self.handled.fetch_add(1, Ordering::AcqRel);
        if let (Some(progress), Some(joined)) = (self.by_instance.get(instance), self.joined.get(instance))
            && progress.tick() == 1
        {
            joined.get_or_init(|| (Instant::now(), before));
        }
        let Some(seen) = payload_number(payload).and_then(|n| self.seen.get(n)) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if seen.fetch_add(1, Ordering::Relaxed) == 0
            && self.distinct.fetch_add(1, Ordering::AcqRel) + 1 == self.seen.len()
        {
            self.all.get_or_init(Instant::now);
            self.finish();
        }
    }

    /// Tells every instance to stop.
    fn finish(&self) {
        self.done.send_replace(true);
    }

    /// An instance's shutdown signal: every message handled (or the run given up).
    pub(crate) fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut done = self.done.subscribe();
        async move {
            // An error: the tally is gone, so nobody is counting any more.
            let _ = done.wait_for(|done| *done).await;
        }
    }
}

/// A received message's payload, whatever the broker.
pub(crate) trait Payload {
    /// The payload, as published.
    fn body(&self) -> &[u8];
}

impl Payload for jwt_relay_kafka::Received {
    fn body(&self) -> &[u8] {
        self.payload()
    }
}

impl Payload for jwt_relay_rabbitmq::Received {
    fn body(&self) -> &[u8] {
        self.payload()
    }
}

impl Payload for jwt_relay_nats::Received {
    fn body(&self) -> &[u8] {
        self.payload()
    }
}

/// Instance `instance`'s handler: counts the message in `tally`, and succeeds.
pub(crate) fn counting<R: Payload>(
    tally: &Arc<Tally>,
    instance: usize,
) -> impl Fn(R) -> std::future::Ready<Result<(), Infallible>> + Send + Sync + 'static {
    let tally = tally.clone();
    move |received| {
        tally.handled(instance, received.body());
        std::future::ready(Ok(()))
    }
}

/// One run of `k` instances.
#[derive(Debug, Clone)]
struct Run {
    /// Messages per second between the first and the last message handled.
    rate: f64,
    /// Messages per second from the instances' start (connecting, joining the group) to the
    /// last message not handled before; `None` if some never were.
    from_start: Option<f64>,
    /// Messages per second from when the last instance to start handled its first message to
    /// the last message handled: the group's rate once all `k` take part (`None` if one never
    /// did).
    all_taking_part: Option<f64>,
    /// From the start to the first message handled.
    first: Duration,
    handled: usize,
    distinct: usize,
    foreign: usize,
    /// Handled by each instance.
    by_instance: Vec<usize>,
    /// When each instance handled its first and its last message, in milliseconds from the
    /// start (none if it handled none).
    spans: Vec<Option<(u128, u128)>>,
    /// Accepted, as the instances' run reports say.
    accepted: u64,
}

/// The three rates of a run, or their medians over the runs.
#[derive(Debug, Clone, Copy)]
struct Rates {
    /// Between the first and the last message handled.
    first_to_last: Option<f64>,
    /// From the start to the last message not handled before.
    from_start: Option<f64>,
    /// Once all `k` instances take part.
    all_taking_part: Option<f64>,
}

impl Rates {
    fn of(run: &Run) -> Rates {
        Rates {
            first_to_last: Some(run.rate),
            from_start: run.from_start,
            all_taking_part: run.all_taking_part,
        }
    }

    /// Each rate's median over `runs` (over the runs that have it).
    fn median(runs: &[Run]) -> Rates {
        let of = |rate: fn(&Rates) -> Option<f64>| {
            let mut rates: Vec<f64> = runs.iter().filter_map(|r| rate(&Rates::of(r))).collect();
            (!rates.is_empty()).then(|| median(&mut rates))
        };
        Rates {
            first_to_last: of(|r| r.first_to_last),
            from_start: of(|r| r.from_start),
            all_taking_part: of(|r| r.all_taking_part),
        }
    }

    /// Each over the same with one instance.
    fn over(&self, one: &Rates) -> Rates {
        let ratio = |k: Option<f64>, one: Option<f64>| Some(k? / one?.max(1e-9));
        Rates {
            first_to_last: ratio(self.first_to_last, one.first_to_last),
            from_start: ratio(self.from_start, one.from_start),
            all_taking_part: ratio(self.all_taking_part, one.all_taking_part),
        }
    }
}

/// Every run of `k` instances on one broker.
#[derive(Debug, Clone)]
pub(crate) struct Scaling {
    broker: String,
    instances: usize,
    messages: usize,
    runs: Vec<Run>,
    /// The median rates with one instance, on the same broker.
    one: Option<Rates>,
}

impl Scaling {
    fn rates(&self) -> Rates {
        Rates::median(&self.runs)
    }

    fn ratios(&self) -> Option<Rates> {
        Some(self.rates().over(self.one.as_ref()?))
    }

    /// Whether every run handled every message, and nothing else.
    fn nothing_lost(&self) -> bool {
        self.runs
            .iter()
            .all(|r| r.distinct == self.messages && r.handled >= self.messages && r.foreign == 0)
    }

    /// The most handler calls in a run (more than the messages: some handled twice).
    fn most_handled(&self) -> usize {
        self.runs.iter().map(|r| r.handled).max().unwrap_or_default()
    }

    /// The fewest distinct messages handled in a run.
    fn fewest_distinct(&self) -> usize {
        self.runs.iter().map(|r| r.distinct).min().unwrap_or_default()
    }

    pub(crate) fn json(&self) -> Value {
        let (rates, ratios) = (self.rates(), self.ratios());
        let round = |x: Option<f64>| x.map(f64::round);
        let ratio =
            |x: fn(&Rates) -> Option<f64>| ratios.as_ref().and_then(x).map(|x| (x * 1000.0).round() / 1000.0);
        json!({
            "measurement": "instances",
            "broker": self.broker,
            "instances": self.instances,
            "messages": self.messages,
            "runs": self.runs.len(),
            "per_s": round(rates.first_to_last),
            "ratio_to_one": ratio(|r| r.first_to_last),
            "from_start_per_s": round(rates.from_start),
            "from_start_ratio_to_one": ratio(|r| r.from_start),
            "all_taking_part_per_s": round(rates.all_taking_part),
            "all_taking_part_ratio_to_one": ratio(|r| r.all_taking_part),
            "first_handled_ms": self.runs.iter().map(|r| r.first.as_millis()).collect::<Vec<_>>(),
            "every_message_handled": self.nothing_lost(),
            "handled": self.runs.iter().map(|r| r.handled).collect::<Vec<_>>(),
            "distinct": self.runs.iter().map(|r| r.distinct).collect::<Vec<_>>(),
            "accepted": self.runs.iter().map(|r| r.accepted).collect::<Vec<_>>(),
            "by_instance": self.runs.iter().map(|r| r.by_instance.clone()).collect::<Vec<_>>(),
            "by_instance_first_last_ms": self.runs.iter().map(|r| r.spans.clone()).collect::<Vec<_>>(),
        })
    }

    fn markdown(&self) -> String {
        let (rates, ratios) = (self.rates(), self.ratios());
        let rate = |r: Option<f64>| r.map_or_else(|| "none".to_owned(), |r| format!("{r:.0}"));
        let ratio = |x: fn(&Rates) -> Option<f64>| {
            ratios
                .as_ref()
                .and_then(x)
                .map(|r| format!("{r:.2}"))
                .unwrap_or_default()
        };
        let split = self
            .runs
            .iter()
            .map(|r| {
                let shares: Vec<String> = r.by_instance.iter().map(usize::to_string).collect();
                shares.join("/")
            })
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} |",
            self.broker,
            self.instances,
            rate(rates.first_to_last),
            ratio(|r| r.first_to_last),
            rate(rates.from_start),
            ratio(|r| r.from_start),
            rate(rates.all_taking_part),
            ratio(|r| r.all_taking_part),
            self.messages,
            self.most_handled(),
            self.fewest_distinct(),
            if self.nothing_lost() { "yes" } else { "**no**" },
            split,
        )
    }
}

/// The Markdown table after the JSON lines.
pub(crate) fn print_table(scalings: &[Scaling], others: &[Value]) {
    println!();
    println!(
        "| broker | instances | msg/s (first to last handled) | ratio to 1 | msg/s (from start) | ratio to 1 | msg/s (once all take part) | ratio to 1 | messages / handled (most) / distinct (fewest) | all handled | handled by each instance, per run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for scaling in scalings {
        println!("{}", scaling.markdown());
    }
    println!();
    for line in others {
        println!("- `{line}`");
    }
}

/// Whether `--instances` measures this broker: those with a destination that instances share
/// and keeps what was published before (not the mock cluster: it keeps about 2 000 records).
pub(crate) fn measured(broker: &Broker) -> bool {
    match broker {
        Broker::Kafka(b) => b.capacity().is_none(),
        Broker::RabbitMq(_) | Broker::JetStream(_) => true,
        Broker::Nats(_) => false,
    }
}

/// `k` = 1, 2, 3 instances on `broker`, `--runs` runs each, one JSON line per `k`.
pub(crate) async fn measure(
    broker: &Broker,
    keys: &Keys,
    messages: usize,
    runs: usize,
) -> Result<Vec<Scaling>, Failure> {
    let tokens = keys.for_scenario(Scenario::Shared, messages)?;
    fill(broker, &tokens).await?;
    let mut scalings: Vec<Scaling> = Vec::new();
    for instances in INSTANCES {
        let mut scaling = Scaling {
            broker: broker.name().to_owned(),
            instances,
            messages,
            runs: Vec::new(),
            one: scalings.first().map(Scaling::rates),
        };
        for _ in 0..runs {
            let run = run(broker, keys, &tokens, instances).await?;
            eprintln!(
                "  {instances} instance(s): {:.0}/s ({:.0}/s from the start, {:.0}/s once all take part), \
                 {} handled, {} distinct of {messages}, by each {:?}, each's first and last at {:?} ms",
                run.rate,
                run.from_start.unwrap_or_default(),
                run.all_taking_part.unwrap_or_default(),
                run.handled,
                run.distinct,
                run.by_instance,
                run.spans
            );
            scaling.runs.push(run);
        }
        if instances == 1 {
            scaling.one = Some(scaling.rates());
        }
        emit(&scaling.json());
        scalings.push(scaling);
    }
    Ok(scalings)
}

/// Publishes one numbered message per token where every run reads them (untimed).
async fn fill(broker: &Broker, tokens: &[String]) -> Result<(), Failure> {
    match broker {
        Broker::Kafka(b) => b.fill_numbered(tokens).await,
        // Filled again before each run: what a run acknowledges is gone.
        Broker::RabbitMq(_) => Ok(()),
        Broker::JetStream(b) => b.fill_numbered(tokens).await,
        Broker::Nats(_) => Err("core NATS keeps nothing for instances to share".into()),
    }
}

/// One run: a new destination over the messages (a Kafka group, a durable JetStream consumer,
/// the RabbitMQ queue filled again), `instances` instances started at once, and the tally.
async fn run(broker: &Broker, keys: &Keys, tokens: &[String], instances: usize) -> Result<Run, Failure> {
    let destination = match broker {
        Broker::Kafka(b) => b.group_for_instances(),
        Broker::RabbitMq(b) => b.refill(tokens).await?,
        Broker::JetStream(b) => b.durable_for_instances().await?,
        Broker::Nats(_) => return Err("core NATS keeps nothing for instances to share".into()),
    };
    // Each its own verifier and cache, as separate processes would have.
    let guards = (0..instances)
        .map(|_| Ok(Guard::new(keys.verifier_with_cache(10_000)?)))
        .collect::<Result<Vec<_>, Failure>>()?;
    let tally = Tally::new(tokens.len(), instances);
    let mut running = Vec::with_capacity(instances);
    for (index, guard) in guards.into_iter().enumerate() {
        let instance = match broker {
            Broker::Kafka(b) => b.instance(&destination, guard, &tally, index),
            Broker::RabbitMq(b) => b.instance(guard, &tally, index),
            Broker::JetStream(b) => b.instance(&destination, guard, &tally, index),
            Broker::Nats(_) => return Err("core NATS keeps nothing for instances to share".into()),
        };
        running.push(tokio::spawn(instance));
    }
    // Given up on after the patience: a finding (messages not handled), not a failure.
    let _ = tokio::time::timeout(PATIENCE, tally.shutdown()).await;
    tally.finish();
    let mut accepted = 0;
    for instance in running {
        let stopped = tokio::time::timeout(PATIENCE, instance)
            .await
            .map_err(|_| "an instance did not stop in time")?;
        accepted += stopped??.accepted;
    }
    if let Broker::JetStream(b) = broker {
        b.remove_durable(&destination).await?;
    }
    let handled = tally.handled.load(Ordering::Relaxed);
    let last_joined = tally
        .joined
        .iter()
        .map(|joined| joined.get().copied())
        .collect::<Option<Vec<_>>>()
        .and_then(|joined| joined.into_iter().max_by_key(|(at, _)| *at));
    let all_taking_part = match (last_joined, tally.progress.span()) {
        (Some((joined, before)), Some((_, last, _))) => Some(rate(handled - before, last - joined)),
        _ => None,
    };
    let spans: Vec<_> = tally.by_instance.iter().map(Progress::span).collect();
    let ms = |at: Instant| (at - tally.started).as_millis();
    let distinct = tally.distinct.load(Ordering::Relaxed);
    Ok(Run {
        rate: tally.progress.rate(),
        from_start: tally
            .all
            .get()
            .map(|all| rate(tokens.len(), *all - tally.started)),
        all_taking_part,
        first: tally
            .progress
            .span()
            .map_or(Duration::ZERO, |(first, ..)| first - tally.started),
        handled,
        distinct,
        foreign: tally.foreign.load(Ordering::Relaxed),
        by_instance: spans.iter().map(|s| s.map_or(0, |(.., n)| n)).collect(),
        spans: spans
            .iter()
            .map(|s| s.map(|(first, last, _)| (ms(first), ms(last))))
            .collect(),
        accepted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::numbered_payload;

    #[tokio::test]
    async fn the_tally_counts_each_message_once_and_stops_when_all_were_handled() {
        let tally = Tally::new(3, 2);
        let stopped = tokio::spawn(tally.shutdown());
        tally.handled(0, &numbered_payload(0));
        tally.handled(1, &numbered_payload(0));
        tally.handled(1, &numbered_payload(2));
        tally.handled(1, b"not numbered");
        assert!(tally.all.get().is_none(), "message 1 not handled yet");
        tally.handled(0, &numbered_payload(1));
        assert!(
            tokio::time::timeout(Duration::from_secs(5), stopped)
                .await
                .is_ok(),
            "every instance told to stop"
        );
        assert_eq!(tally.handled.load(Ordering::Relaxed), 5);
        assert_eq!(tally.distinct.load(Ordering::Relaxed), 3);
        assert_eq!(tally.foreign.load(Ordering::Relaxed), 1);
        let by_instance: Vec<usize> = tally
            .by_instance
            .iter()
            .map(|p| p.span().map_or(0, |(.., n)| n))
            .collect();
        assert_eq!(by_instance, [2, 3]);
    }
}
