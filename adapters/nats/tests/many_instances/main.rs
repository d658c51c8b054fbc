//! Many instances of one consumer against the real nats-server, in one process (issue 25):
//! three instances share the work, one is killed mid-stream and a new one joins.
//!
//! The instance to kill (instance 0) reaches the server through a local TCP forwarder. Once
//! [`FREEZE_AT`] messages are handled, it freezes on its next message: its handlers stop where
//! they are, as a killed process's do. The test then cuts the forwarder (the server sees the
//! socket close with no UNSUB and no last acks, as after `kill -9` or a lost host), aborts the
//! instance's run and drops its client without closing or draining anything, and starts a new
//! instance. Then it publishes the rest.
//!
//! - [`jetstream`]: one durable pull consumer shared by the instances.
//! - [`core`]: a core NATS queue group.
//! - [`service`]: request/reply, micro endpoints and plain queue subscriptions.
//!
//! On core NATS and request/reply, a second scenario has a member leave gracefully instead
//! (its shutdown future completes) mid-stream: it loses nothing, since it handles what its
//! client had received before its run returns. Messages wait while it leaves (the tests fence
//! them with [`Fence`]): one still on its way to the member's client when the server takes
//! the unsubscribe would be dropped by async-nats 0.51, which forgets a drained subscription
//! without waiting for the server's answer.
//!
//! Each test prints a `many-instances <transport>: ...` line for RELIABILITY.md, and a line of
//! details.
//!
//! Hostile messages go where the kill cannot reach them: before the first valid message (and
//! dead-lettered before it is published), and after the kill. Dead-lettering is "store the
//! copy, then term the original": a kill between the two stores a second copy (at least once),
//! which these tests do not provoke.

#![allow(clippy::unwrap_used)]

// The NATS tests' support module, shared with the crate's other test targets.
#[path = "../support/mod.rs"]
mod support;

mod core;
mod jetstream;
mod service;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt as _;
use jwt_relay::AuthContext;
use jwt_relay_nats::bytes::Bytes;
use jwt_relay_nats::{Received, RunReport, Stats, async_nats};
use support::common::{self, Forwarder};
use support::{forged, nats_url, user, wrong_audience};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Valid messages per test.
const VALID: usize = 20_000;
/// Valid messages published before the kill; the rest after the new instance joined.
const BEFORE_KILL: usize = VALID / 2;
/// Once this many messages are handled, the instance to kill freezes on its next one.
const FREEZE_AT: usize = VALID / 5;
/// Hostile messages published before the first valid one, and after the kill.
const HOSTILE_BEFORE: usize = 3;
const HOSTILE_AFTER: usize = 2;
/// On JetStream, the first handler call fails for every id divisible by this (20 ids).
const FAIL_EVERY: usize = 1_000;
/// Instances at the start; the one that joins is instance `INSTANCES`.
const INSTANCES: usize = 3;
/// The instance that is killed.
const VICTIM: usize = 0;
/// Messages each instance handles at once.
const CONCURRENCY: usize = 4;
/// Messages published at once (JetStream publishes wait for the stream's ack).
const IN_FLIGHT: usize = 64;
/// Distinct users whose tokens the valid messages carry.
const USERS: usize = 8;
const WAIT: Duration = Duration::from_secs(60);

fn valid_id(n: usize) -> String {
    format!("m{n:05}")
}

fn number(id: &str) -> Option<usize> {
    id.strip_prefix('m')?.parse().ok()
}

/// `(id, token)` of the hostile messages: forged signatures and a wrong audience, in turn.
fn hostile() -> Vec<(String, String)> {
    (0..HOSTILE_BEFORE + HOSTILE_AFTER)
        .map(|k| {
            let token = if k % 2 == 0 {
                forged(&format!("mallory{k}"))
            } else {
                wrong_audience("alice")
            };
            (format!("hostile-{k}"), token)
        })
        .collect()
}

/// The users whose identities the valid messages carry.
async fn users() -> Vec<AuthContext> {
    let mut users = Vec::new();
    for u in 0..USERS {
        users.push(user(&format!("user{u}"), 1800).await);
    }
    users
}

/// The ledger of a test: what the handlers did, with the JetStream delivery count (1 on core NATS).
type Ledger = common::Ledger<u64>;

type Handling = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The handler of `instance`: records each call, works a millisecond, records the success
/// ([`Ledger::call`]). With `fail_once`, the first call of every [`FAIL_EVERY`]th id fails. The
/// instance to kill freezes on its first call after [`FREEZE_AT`] successes, and on any it
/// finishes after that.
fn worker(
    ledger: &Arc<Ledger>,
    instance: usize,
    fail_once: bool,
) -> impl Fn(Received) -> Handling + Send + Sync + 'static {
    let ledger = ledger.clone();
    move |received: Received| {
        let ledger = ledger.clone();
        let id = received
            .headers()
            .and_then(|h| h.get("x-id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let delivered = received.delivered().unwrap_or(1);
        let fails = fail_once && number(&id).is_some_and(|n| n.is_multiple_of(FAIL_EVERY));
        Box::pin(async move { ledger.call(instance, id, delivered, fails).await })
    }
}

/// A client of its own for one instance, as a process of its own would have; the instance to
/// kill (the ledger's victim) goes through a [`Forwarder`] and never reconnects (a killed
/// process does not).
async fn instance_client(instance: usize, ledger: &Ledger) -> (Client, Option<Forwarder>) {
    let forwarder = match ledger.victim() == Some(instance) {
        true => Some(Forwarder::start(&nats_url(), "nats", 4222).await),
        false => None,
    };
    if let Some(forwarder) = &forwarder {
        ledger.arm(forwarder.switch());
    }
    let url = forwarder.as_ref().map_or_else(nats_url, |f| f.url().to_owned());
    let mut options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    if forwarder.is_some() {
        options = options.max_reconnects(1).ignore_discovered_servers();
    }
    let client = options.connect(url.as_str()).await.expect("connected");
    (client, forwarder)
}

/// One running instance.
struct Instance {
    client: Client,
    forwarder: Option<Forwarder>,
    stats: Stats,
    stop: oneshot::Sender<()>,
    run: JoinHandle<jwt_relay_nats::Result<RunReport>>,
    /// Kept while the instance lives (the core test's probe subscription).
    _keep: Option<async_nats::Subscriber>,
}

impl Instance {
    /// Finishes the kill: the forwarder was cut when the instance froze (nothing more of it
    /// reached the server: no acks, no goodbye); now its run is dropped mid-flight, with its
    /// connection, closing nothing.
    async fn kill(self) {
        let forwarder = self.forwarder.expect("the instance to kill has a forwarder");
        forwarder.switch().cut_and_wait().await;
        self.run.abort();
        let ended = self.run.await;
        assert!(
            ended.is_err_and(|e| e.is_cancelled()),
            "the run was killed, not finished"
        );
        drop(self.client);
    }

    /// Stops it the ordinary way: in-flight messages finish and are settled (on core NATS,
    /// the messages its client had received too).
    async fn stop(self) -> RunReport {
        self.stop.send(()).ok();
        stopped(self.run).await
    }
}

/// What a run that was told to stop returns, once it has.
async fn stopped(run: JoinHandle<jwt_relay_nats::Result<RunReport>>) -> RunReport {
    tokio::time::timeout(WAIT, run)
        .await
        .expect("the run stops")
        .unwrap()
        .expect("the run ends cleanly")
}

/// A round trip through one instance's client: answered once everything the server sent that
/// client before has reached it (the server keeps the order of what it sends a connection, and
/// of what it reads from one).
struct Fence {
    subject: String,
    responder: JoinHandle<()>,
}

impl Fence {
    /// Answers requests to a subject of its own through `client`.
    async fn new(client: &Client) -> Fence {
        let subject = support::unique("many.fence");
        let mut requests = client.subscribe(subject.clone()).await.expect("subscribed");
        client.flush().await.expect("the fence reached the server");
        let answering = client.clone();
        let responder = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    answering.publish(reply, Bytes::new()).await.ok();
                }
            }
        });
        Fence { subject, responder }
    }

    /// Passes the fence from `client`: what `client` published before has reached the fenced
    /// client by then, and what the fenced client published before has reached the server.
    async fn pass(&self, client: &Client) {
        tokio::time::timeout(WAIT, client.request(self.subject.clone(), Bytes::new()))
            .await
            .expect("the fence answers in time")
            .expect("the fence answers");
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

fn sum(stats: &[Stats], field: impl Fn(RunReport) -> u64) -> u64 {
    stats.iter().map(|s| field(s.snapshot())).sum()
}
