//! An expired token is exchanged at the development token service (RFC 8693), the handler runs
//! with the fresh token, and what it sends downstream carries the fresh token; three records
//! with the same expired token make one exchange.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::exchange::ExchangeCache;
use jwt_relay::{Acceptance, Exchange, Guard, Propagator};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, header, run_to_limit, unique};

pub async fn an_expired_token_is_exchanged_and_flows_on(cluster: Cluster) {
    let idp = Idp::start().await;
    let (orders, shipments) = (unique("orders"), unique("shipments"));
    cluster.topic(&orders, 1).await;
    cluster.create(&shipments, 1).await;
    let producer = cluster.producer(Propagator::default());
    let expired = idp.expired("alice");
    for n in 0..3 {
        let id = n.to_string();
        let record = FutureRecord::to(&orders).key(&id).payload(&id);
        producer
            .send_with_token(record, Some(&expired))
            .await
            .expect("sent");
    }

    let client = idp.sts.client().build().unwrap();
    let exchange = Exchange::new(Arc::new(ExchangeCache::new(client)));
    let guard = Guard::builder(idp.verifier.clone()).policy(exchange).build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (record, downstream, target) = (seen.clone(), producer.clone(), shipments.clone());
    let consumer = consumer(&cluster, &unique("shipping"), &orders, guard)
        .limit(3)
        .build()
        .unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(60), move |delivery| {
        let context = delivery.context().clone();
        record.lock().unwrap().push((
            context.subject().map(str::to_owned),
            context.acceptance(),
            context.token().to_owned(),
        ));
        let (producer, target) = (downstream.clone(), target.clone());
        async move {
            let record = FutureRecord::to(&target).key("1").payload("shipped");
            producer
                .send(record, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;

    assert_eq!((report.accepted, report.rejected), (3, 0));
    let seen = seen.lock().unwrap().clone();
    let fresh = seen[0].2.clone();
    assert_ne!(fresh, expired);
    for (subject, acceptance, token) in &seen {
        assert_eq!(subject.as_deref(), Some("alice"));
        assert_eq!(*acceptance, Acceptance::Exchanged);
        assert_eq!(token, &fresh, "one exchange, cached for the burst");
    }
    assert_eq!(idp.sts.stats().exchanges_issued, 1);
    let sent = cluster.read(&shipments, 3);
    assert_eq!(sent.len(), 3);
    for record in &sent {
        assert_eq!(header(record, "Authorization"), Some(format!("Bearer {fresh}")));
    }
    let downstream = idp
        .verifier
        .verify(&fresh)
        .await
        .expect("the fresh token verifies");
    assert_eq!(downstream.subject(), Some("alice"));
}
