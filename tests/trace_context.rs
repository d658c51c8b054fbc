//! With the `opentelemetry` feature, a publish writes the current span's W3C trace context
//! (`traceparent`) next to the token, and the consumer's `jwt_relay.consume` span continues that
//! trace: a chain of services shows as one trace. One test in this binary: it owns the global
//! `tracing` subscriber and OpenTelemetry propagator.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use jwt_relay::memory::{MemoryBroker, MemoryConsumer, MemoryPublisher, Received};
use jwt_relay::testing::{DevSts, DevStsConfig};
use jwt_relay::{Guard, Headers, Issuer, Propagator, Verifier};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[test]
fn the_consumer_continues_the_publishers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("jwt-relay-test"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (trace_id, checkout_id) = runtime.block_on(async {
        let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
        let verifier = Verifier::builder()
            .issuer(
                Issuer::new(sts.issuer())
                    .audience("orders")
                    .jwks_url(sts.jwks_url()),
            )
            .build()
            .unwrap();
        let alice = verifier
            .verify(&sts.mint("alice", "orders", Duration::from_secs(300)))
            .await
            .unwrap();
        let broker = MemoryBroker::new();
        let publisher = MemoryPublisher::new(broker.clone(), Propagator::default());

        // The publishing service's own span: the trace starts here.
        let checkout = tracing::info_span!("checkout");
        let ids = {
            let context = checkout.context();
            let span = context.span();
            (span.span_context().trace_id(), span.span_context().span_id())
        };
        publisher
            .publish("orders", Headers::new(), "an order", Some(&alice))
            .instrument_in(&checkout)
            .await
            .unwrap();
        drop(checkout);
        let sent = broker.messages("orders");
        let traceparent = std::str::from_utf8(sent[0].headers.get("traceparent").unwrap()).unwrap();
        assert!(traceparent.contains(&ids.0.to_string()), "{traceparent}");

        MemoryConsumer::new(broker, "orders", Guard::new(verifier))
            .run_until_idle(|_: Received| async {
                tracing::info_span!("billing.handle").in_scope(|| ());
                Ok::<(), String>(())
            })
            .await
            .unwrap();
        ids
    });

    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let consume = spans.iter().find(|s| s.name == "jwt_relay.consume").unwrap();
    assert_eq!(
        consume.span_context.trace_id(),
        trace_id,
        "one trace across the hop"
    );
    assert_eq!(
        consume.parent_span_id, checkout_id,
        "the consume span's parent is the publisher's span"
    );
    let handler = spans.iter().find(|s| s.name == "billing.handle").unwrap();
    assert_eq!(
        handler.span_context.trace_id(),
        trace_id,
        "the handler's spans join it too"
    );
    assert_eq!(handler.parent_span_id, consume.span_context.span_id());
}

/// Polls a future inside a span (the publish happens in the publishing service's span).
trait InstrumentIn: std::future::Future + Sized {
    fn instrument_in(self, span: &tracing::Span) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, span.clone())
    }
}

impl<F: std::future::Future> InstrumentIn for F {}
