//! A server restart mid-stream: a private nats-server with JetStream (file
//! storage in a temporary directory) is stopped while the consumer works,
//! then started again on the same port and store. The consumer keeps going,
//! the server redelivers what was not acknowledged, and every published id
//! is handled at least once.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType};
use jwt_relay::Propagator;
use jwt_relay_nats::{JetStreamConsumer, JetStreamPublisher, Received, Topology, async_nats};
use support::{guard, headers, pull_consumer, shutdown, stored, user, wait_until};
use tokio::process::{Child, Command};

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// Starts nats-server with JetStream on `port`, storing in `dir`, and waits
/// until it accepts connections.
async fn start_server(port: u16, dir: &Path) -> Child {
    let child = Command::new(NATS_SERVER)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server starts");
    let up = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "nats-server listens on {port}");
    child
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_survives_a_server_restart_and_every_id_is_handled() {
    if !jwt_relay::testing::program_available("nats-server", NATS_SERVER) {
        return;
    }
    let dir = tempfile::tempdir().expect("a store directory");
    let port = free_port();
    let mut server = start_server(port, dir.path()).await;
    let url = format!("nats://127.0.0.1:{port}");
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|attempt| Duration::from_millis(100 * u64::from(attempt.min(10) as u32)))
        .connect(url.as_str())
        .await
        .expect("connected to the private server");
    let js = jetstream::new(client);
    let topology = Topology::new("RESTART", ["restart.*"]).storage(StorageType::File);
    let declared = topology.declare(&js).await.expect("declared");
    let consumer = pull_consumer(&declared.stream, "worker", |c| {
        c.ack_wait = Duration::from_secs(2)
    })
    .await;

    let publisher = JetStreamPublisher::new(js.clone(), Propagator::default());
    let alice = user("alice", 600).await;
    const N: usize = 40;
    for id in 0..N {
        publisher
            .publish(
                "restart.orders",
                headers(None, &id.to_string()),
                "x",
                Some(&alice),
            )
            .await
            .expect("stored");
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let consumer = JetStreamConsumer::new(consumer, guard()).concurrency(2);
    let stats = consumer.stats();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move {
        consumer
            .run(
                move |d: Received| {
                    let record = record.clone();
                    let id = d
                        .headers()
                        .and_then(|h| h.get("x-id"))
                        .map(|v| v.as_str().to_owned());
                    async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        record.lock().unwrap().push(id);
                        Ok::<(), String>(())
                    }
                },
                stopped,
            )
            .await
    });

    assert!(
        wait_until(Duration::from_secs(20), || seen.lock().unwrap().len() >= N / 4).await,
        "a quarter handled before the restart"
    );
    server.kill().await.expect("the server stops");
    server.wait().await.ok();
    let during = seen.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut server = start_server(port, dir.path()).await;

    let all = || {
        let ids: BTreeSet<_> = seen.lock().unwrap().iter().flatten().cloned().collect();
        ids.len() == N
    };
    assert!(
        wait_until(Duration::from_secs(60), all).await,
        "every id handled after the restart (handled {} before it): {:?}",
        during,
        stats.snapshot()
    );
    assert!(during < N, "the restart happened mid-stream");
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");
    assert_eq!(stats.snapshot().rejected, 0, "nothing rejected");
    assert!(
        stored(&js, &topology.dead_letter_stream_name()).await.is_empty(),
        "nothing dead-lettered"
    );
    let handled = seen.lock().unwrap().len();
    eprintln!("{N} published, {handled} handled (at least once), {during} before the restart");
    topology.delete(&js).await.ok();
    server.kill().await.ok();
}
