//! `Grace` on JetStream: an expired token is accepted thanks to the server's
//! timestamp (it was valid when the message was stored), and refused when
//! the message is older than the grace period.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use jwt_relay::consume::REASON_KIND;
use jwt_relay::{Acceptance, ErrorKind, Grace, Guard};
use jwt_relay_nats::JetStreamConsumer;
use support::js::{Seen, Setup, recorder};
use support::{backoff, header, headers, pull_consumer, shutdown, stored, token, verifier, wait_until};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_accepts_an_expired_token_by_the_server_timestamp_and_refuses_an_old_message() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let (young, old) = (setup.subject("young"), setup.subject("old"));
    // Valid when published, expired (no leeway) by the time it is consumed.
    let short = token("alice", 2);
    for subject in [&young, &old] {
        setup
            .js
            .publish_with_headers(subject.clone(), headers(Some(&short), subject), "x".into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        verifier().verify(&short).await.expect_err("expired now").kind(),
        ErrorKind::Expired
    );

    let run = |filter: &String, max_age: Duration, name: &str| {
        let filter = filter.clone();
        let stream = &setup.declared.stream;
        let name = name.to_owned();
        async move {
            let consumer = pull_consumer(stream, &name, |c| c.filter_subject = filter).await;
            let guard = Guard::builder(verifier())
                .backoff(backoff())
                .policy(Grace::new(max_age))
                .build();
            JetStreamConsumer::new(consumer, guard)
        }
    };
    let generous = run(&young, Duration::from_secs(60), "generous").await;
    let strict = run(&old, Duration::from_secs(1), "strict").await;
    let (generous_stats, strict_stats) = (generous.stats(), strict.stats());
    let seen: Seen = Default::default();
    let (stop, stopped) = shutdown();
    let (stop2, stopped2) = shutdown();
    let handler = recorder(&seen);
    let handler2 = recorder(&seen);
    let runs = [
        tokio::spawn(async move { generous.run(handler, stopped).await }),
        tokio::spawn(async move { strict.run(handler2, stopped2).await }),
    ];
    assert!(
        wait_until(WAIT, || generous_stats.snapshot().accepted == 1
            && strict_stats.snapshot().dead_lettered == 1)
        .await,
        "generous {:?}, strict {:?}",
        generous_stats.snapshot(),
        strict_stats.snapshot()
    );
    stop.send(()).ok();
    stop2.send(()).ok();
    for run in runs {
        run.await.unwrap().expect("the run ends cleanly");
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("alice".to_owned()), Acceptance::Grace, young.clone())],
        "accepted under grace, thanks to the broker timestamp"
    );
    let dead = stored(&setup.js, &setup.topology.dead_letter_stream_name()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], "x-id").as_deref(), Some(old.as_str()));
    assert_eq!(header(&dead[0], REASON_KIND).as_deref(), Some("Expired"));
    setup.delete().await;
}
