//! Several `jwt-relay kafka consume --group` processes share a topic on the real broker while
//! records arrive; one is killed with SIGKILL and a new one joins. Every record is handled or
//! dead-lettered, and a record is handled twice only where the kill explains it: the killed
//! process handled it within its last commit interval.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jwt_relay::Propagator;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use serde_json::Value;

#[allow(dead_code, unreachable_pub)]
#[path = "../../adapters/kafka/tests/kafka/support.rs"]
mod kafka;

mod support;

use kafka::{Cluster, eventually, unique};
use support::{ISS, keygen, mint};

const AUD: &str = "orders";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 3_000;
/// One record in this many carries an expired token.
const EVERY_HOSTILE: usize = 600;
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// A `consume` line, with which process printed it and when it was read.
#[derive(Debug, Clone)]
struct Line {
    process: usize,
    at: Instant,
    partition: i64,
    offset: i64,
    outcome: String,
}

/// A running `jwt-relay kafka consume`, its stdout lines gathered as they come.
struct Process {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    stdout: std::thread::JoinHandle<()>,
}

fn start(process: usize, args: &[&str], lines: &Arc<Mutex<Vec<Line>>>) -> Process {
    let mut child = support::spawn(args, &[]);
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let lines = lines.clone();
    let stdout = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: Value = serde_json::from_str(&line).unwrap();
            lines.lock().unwrap().push(Line {
                process,
                at: Instant::now(),
                partition: value["partition"].as_i64().unwrap(),
                offset: value["offset"].as_i64().unwrap(),
                outcome: value["outcome"].as_str().unwrap().to_owned(),
            });
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Process {
        child,
        stderr,
        stdout,
    }
}

impl Process {
    /// Stops it as Ctrl-C does, and returns its exit code and stderr.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        self.stdout.join().unwrap();
        (status.code(), self.stderr.join().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_broker() {
    if let Some(cluster) = Cluster::broker() {
        several_processes_one_killed(cluster).await;
    }
}

async fn several_processes_one_killed(cluster: Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = keygen(dir.path(), "ES256", "group-1");
    let (key, jwks) = (
        key.to_str().unwrap().to_owned(),
        jwks.to_str().unwrap().to_owned(),
    );
    let valid = mint(&key, AUD, &["--ttl", "10m"]);
    let expired = mint(&key, AUD, &["--ttl", "-10m"]);
    let topic = unique("cli-group");
    cluster.topic(&topic, PARTITIONS).await;
    let brokers = cluster.bootstrap();
    let group = unique("cli-group");
    let interval = format!("{}s", COMMIT_INTERVAL.as_secs());
    let args: Vec<&str> = vec![
        "kafka",
        "consume",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--jwks",
        &jwks,
        "--issuer",
        ISS,
        "--audience",
        AUD,
        "--commit-interval",
        &interval,
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=500",
    ];
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut processes: Vec<Option<Process>> = (0..3).map(|p| Some(start(p, &args, &lines))).collect();

    // Records arrive at about 200 a second while processes come and go.
    let producer = cluster.producer(Propagator::default());
    let mut good = BTreeSet::new();
    let mut hostile = BTreeSet::new();
    let mut killed_at = None;
    for i in 0..RECORDS {
        if i == RECORDS / 3 {
            let mut killed = processes[0].take().unwrap();
            killed.child.kill().unwrap(); // SIGKILL
            killed.child.wait().unwrap();
            killed_at = Some(Instant::now());
            killed.stdout.join().unwrap();
        }
        if i == RECORDS / 2 {
            processes.push(Some(start(3, &args, &lines)));
        }
        let id = format!("{i:05}");
        let bad = i % EVERY_HOSTILE == EVERY_HOSTILE / 2;
        let record = FutureRecord::to(&topic).key(&id).payload(&id);
        let token = if bad { &expired } else { &valid };
        let sent = producer
            .send_with_token(record, Some(token))
            .await
            .expect("published");
        let at = (i64::from(sent.partition), sent.offset);
        if bad {
            hostile.insert(at)
        } else {
            good.insert(at)
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = killed_at.unwrap();

    let settled =
        |lines: &[Line]| -> BTreeSet<(i64, i64)> { lines.iter().map(|l| (l.partition, l.offset)).collect() };
    eventually(
        "every record settled by the survivors",
        Duration::from_secs(120),
        || settled(&lines.lock().unwrap()).len() >= RECORDS,
    )
    .await;
    for process in processes.into_iter().flatten() {
        let (code, stderr) = process.interrupt();
        // 1: some record was dead-lettered by this process; 0: none was.
        assert!(matches!(code, Some(0 | 1)), "exit {code:?}: {stderr}");
        assert!(
            !stderr.contains(&valid) && !stderr.contains(&expired),
            "no token printed"
        );
    }
    let lines = lines.lock().unwrap().clone();

    let accepted: BTreeSet<(i64, i64)> = lines
        .iter()
        .filter(|l| l.outcome == "accepted")
        .map(|l| (l.partition, l.offset))
        .collect();
    let dead: BTreeSet<(i64, i64)> = lines
        .iter()
        .filter(|l| l.outcome == "dead-lettered")
        .map(|l| (l.partition, l.offset))
        .collect();
    assert_eq!(accepted, good, "every good record handled, nothing else");
    assert_eq!(dead, hostile, "every expired record dead-lettered");

    // Each process handles a partition's records in increasing order.
    let mut last: BTreeMap<(usize, i64), i64> = BTreeMap::new();
    for l in &lines {
        if let Some(previous) = last.insert((l.process, l.partition), l.offset) {
            assert!(
                l.offset > previous,
                "process {} went back on partition {}: {} after {previous}",
                l.process,
                l.partition,
                l.offset
            );
        }
    }

    // Settled twice: only what the killed process settled in its last commit interval.
    let mut first: BTreeMap<(i64, i64), &Line> = BTreeMap::new();
    let mut twice = Vec::new();
    for l in &lines {
        match first.get(&(l.partition, l.offset)) {
            None => {
                first.insert((l.partition, l.offset), l);
            }
            Some(earlier) => twice.push((*earlier).clone()),
        }
    }
    // Those first settled by the killed process: within its last commit interval before the
    // kill. Those first settled by a survivor came back after a clean hand-over, which Tansu
    // 0.6.0's group coordinator lets happen now and then (RELIABILITY.md): reported.
    let explained = COMMIT_INTERVAL + Duration::from_millis(1_500);
    let (killed, handed_over): (Vec<&Line>, Vec<&Line>) = twice.iter().partition(|t| t.process == 0);
    for t in &killed {
        let before = killed_at.duration_since(t.at);
        assert!(
            before <= explained,
            "{}[{}] settled twice, first {before:?} before the kill",
            t.partition,
            t.offset
        );
    }
    let copies = cluster.read(&format!("{topic}.dlq"), hostile.len());
    assert!(
        copies.len() >= hostile.len(),
        "every expired record has its dead letter"
    );
    println!(
        "many-instances kafka cli: published={RECORDS} handled={} dead_lettered={} duplicated={} lost=0 \
         (3 processes, one killed with SIGKILL at a third, one added at half; commit interval {COMMIT_INTERVAL:?}; \
         settled again after the kill: {}, after a clean hand-over: {})",
        lines.iter().filter(|l| l.outcome == "accepted").count(),
        dead.len(),
        twice.len(),
        killed.len(),
        handed_over.len(),
    );
}
