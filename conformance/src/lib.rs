//! The conformance tests of jwt-relay's transports (in `tests/`): the same messages through
//! every transport — the in-memory broker, Kafka (librdkafka's mock cluster and a real
//! broker), RabbitMQ, core NATS and JetStream — must give the same outcomes, the same metric
//! series and the same dead-letter reasons, since one engine decides them all.
//!
//! Nothing here is published; the crate holds no code.
