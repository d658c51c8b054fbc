//! The token service goes down while records with expired tokens arrive under `Exchange`. It
//! answers 503 first, then is too slow to answer within the client's timeout. The records wait
//! and are retried with backoff, none is dead-lettered, and all of them flow once the service
//! is back. The number of calls the service received stays bounded: no retry storm.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::testing::Mode;
use jwt_relay::{Acceptance, Propagator};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, eventually, spawn, text, unique};

const RECORDS: usize = 20;

pub async fn records_wait_out_a_token_service_outage(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("token-outage");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    // Two users' expired tokens: two exchanges once the service is back.
    let expired = [idp.expired("alice"), idp.expired("bob")];
    let ids: BTreeSet<String> = (0..RECORDS).map(|i| format!("{i:02}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&expired[n % 2]))
            .await
            .expect("sent");
    }

    idp.sts.set_mode(Mode::Unavailable { retry_after: None });
    let guard = idp.sts.exchanging_guard(idp.verifier.clone()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let consumer = consumer(&cluster, &unique("shipping"), &topic, guard)
        .build()
        .unwrap();
    let stats = consumer.stats();
    let running = spawn(consumer, move |delivery| {
        let exchanged = delivery.context().acceptance() == Acceptance::Exchanged;
        record.lock().unwrap().push((text(&delivery), exchanged));
        async { Ok(()) }
    });

    // Down (503), then too slow: nothing is handled, nothing dead-lettered, retries scheduled.
    eventually("retries are scheduled", Duration::from_secs(60), || {
        stats.snapshot().retried >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    idp.sts.set_mode(Mode::Slow(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing handled while it is down"
    );
    assert_eq!(
        stats.snapshot().dead_lettered,
        0,
        "nothing dead-lettered while it is down"
    );
    let during = idp.sts.stats().token_requests;

    idp.sts.set_mode(Mode::Normal);
    eventually("every record is handled", Duration::from_secs(60), || {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
            == ids
    })
    .await;
    let report = running.stop().await;

    assert!(
        seen.lock().unwrap().iter().all(|(_, exchanged)| *exchanged),
        "every record ran with an exchanged token"
    );
    assert_eq!((report.rejected, report.dead_lettered), (0, 0), "{report:?}");
    let calls = idp.sts.stats().token_requests;
    eprintln!("token service calls: {during} during the outage, {calls} in all");
    // One partition waits on one record at a time, backing off from 100 ms to 500 ms: about
    // ten calls in the outage's few seconds, then one exchange per user. Not one per record
    // per try.
    assert!(during <= 20, "{during} calls during the outage");
    assert!(
        calls <= during + 4,
        "{calls} calls in all, {during} during the outage"
    );
}
