//! Missing, forged, expired and wrong-audience tokens land in the dead-letter topic with their
//! reasons and without the token, and the group's offset moves past them.

use std::time::Duration;

use jwt_relay::{Propagator, REASON_CLASS};
use jwt_relay_kafka::rdkafka::message::Message as _;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use jwt_relay_kafka::{ORIGINAL_OFFSET, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP};

use crate::support::{Cluster, Idp, consumer, header, reasons, run_to_limit, unique};

pub async fn bad_tokens_are_dead_lettered_without_the_token(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("bad-tokens");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let tokens = [
        ("good-1", Some(idp.token("alice"))),
        ("missing", None),
        ("forged", Some(idp.forged("alice"))),
        ("expired", Some(idp.expired("alice"))),
        ("payroll", Some(idp.other_audience("alice"))),
        ("good-2", Some(idp.token("bob"))),
    ];
    for (id, token) in &tokens {
        let record = FutureRecord::to(&topic).key(*id).payload(*id);
        producer
            .send_with_token(record, token.as_deref())
            .await
            .expect("sent");
    }

    let group = unique("billing");
    let consumer = consumer(&cluster, &group, &topic, idp.guard())
        .limit(6)
        .build()
        .unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(60), |_| async { Ok(()) }).await;
    assert_eq!(
        (report.accepted, report.rejected, report.dead_lettered),
        (2, 4, 4)
    );

    let copies = cluster.read(&format!("{topic}.dlq"), 4);
    assert_eq!(copies.len(), 4, "every bad record is in the dead-letter topic");
    let kinds = reasons(&copies);
    for kind in ["Missing", "BadSignature", "Expired", "InvalidAudience"] {
        assert_eq!(kinds.get(kind), Some(&1), "one {kind} in {kinds:?}");
    }
    for copy in &copies {
        assert!(header(copy, "authorization").is_none(), "the token is dropped");
        let all: Vec<u8> = copy
            .headers()
            .map(|h| {
                use jwt_relay_kafka::rdkafka::message::Headers as _;
                h.iter()
                    .flat_map(|h| h.value.unwrap_or_default().to_vec())
                    .collect()
            })
            .unwrap_or_default();
        for token in tokens.iter().filter_map(|(_, t)| t.as_deref()) {
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                !all.windows(signature.len()).any(|w| w == signature.as_bytes()),
                "no token in a dead-lettered copy"
            );
        }
        assert_eq!(header(copy, REASON_CLASS).as_deref(), Some("permanent"));
        assert_eq!(header(copy, ORIGINAL_SUBJECT), Some(topic.clone()));
        assert!(header(copy, ORIGINAL_TIMESTAMP).is_some_and(|t| t.ends_with(" create-time")));
        let offset: i64 = header(copy, ORIGINAL_OFFSET).unwrap().parse().unwrap();
        let id = copy.key().map(|k| String::from_utf8_lossy(k).into_owned());
        assert_eq!(
            id.as_deref(),
            Some(tokens[offset as usize].0),
            "the copy keeps its key"
        );
        assert_eq!(
            copy.payload(),
            id.as_deref().map(str::as_bytes),
            "and its payload"
        );
    }
    assert_eq!(
        cluster.committed(&group, &topic),
        6,
        "the offset moved past every record"
    );
}
