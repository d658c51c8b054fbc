//! Missing, forged, expired, wrong-audience, duplicated and binary tokens land in the
//! dead-letter topic with their reasons and without the token, and the group's offset moves
//! past them.

use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay::consume::REASON_CLASS;
use jwt_relay_kafka::rdkafka::message::{Header, Message as _, OwnedHeaders};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use jwt_relay_kafka::{ORIGINAL_DESTINATION, ORIGINAL_OFFSET, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP};

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
    // Written raw: two token headers (in two casings), and a token header that is not text.
    let good = format!("Bearer {}", idp.token("alice"));
    let twice = OwnedHeaders::new()
        .insert(Header {
            key: "Authorization",
            value: Some(&good),
        })
        .insert(Header {
            key: "authorization",
            value: Some(&good),
        });
    let binary = OwnedHeaders::new().insert(Header {
        key: "Authorization",
        value: Some(&b"Bearer \xff\xfe"[..]),
    });
    for (id, headers) in [("twice", twice), ("binary", binary)] {
        let record = FutureRecord::to(&topic).key(id).payload(id).headers(headers);
        producer
            .inner()
            .send(record, Duration::from_secs(10))
            .await
            .expect("sent");
    }
    let ids: Vec<&str> = tokens
        .iter()
        .map(|(id, _)| *id)
        .chain(["twice", "binary"])
        .collect();

    let group = unique("billing");
    let consumer = consumer(&cluster, &group, &topic, idp.guard())
        .limit(8)
        .build()
        .unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(60), |_| async { Ok(()) }).await;
    assert_eq!(
        (report.accepted, report.rejected, report.dead_lettered),
        (2, 6, 6)
    );

    let copies = cluster.read(&format!("{topic}.dlq"), 6);
    assert_eq!(copies.len(), 6, "every bad record is in the dead-letter topic");
    let kinds = reasons(&copies);
    let expected = [
        "Missing",
        "BadSignature",
        "Expired",
        "InvalidAudience",
        "DuplicateHeader",
        "NonAscii",
    ];
    for kind in expected {
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
        assert_eq!(header(copy, ORIGINAL_DESTINATION), Some(topic.clone()));
        assert!(
            header(copy, ORIGINAL_TIMESTAMP).is_some_and(|t| t.ends_with(" client")),
            "a producer's create time"
        );
        let offset: i64 = header(copy, ORIGINAL_OFFSET).unwrap().parse().unwrap();
        let id = copy.key().map(|k| String::from_utf8_lossy(k).into_owned());
        assert_eq!(
            id.as_deref(),
            Some(ids[offset as usize]),
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
        8,
        "the offset moved past every record"
    );
}
