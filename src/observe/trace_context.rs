//! W3C trace context (`traceparent`, `tracestate`) through message headers,
//! so that a chain of services shows as one trace: with the `opentelemetry`
//! feature, a publish writes the current span's context next to the token,
//! and a consumed message's `jwt_relay.consume` span continues the trace
//! found in its headers. Both use OpenTelemetry's global text-map
//! propagator (`opentelemetry::global::set_text_map_propagator`, usually a
//! `TraceContextPropagator`); spans become OpenTelemetry spans through a
//! `tracing_opentelemetry` layer. Without the feature, both do nothing.

use tracing::Span;

use crate::carrier::{Extractor, Injector};

/// Makes `span` continue the trace whose context `headers` carry, if any.
#[cfg(feature = "opentelemetry")]
pub(crate) fn continue_trace(span: &Span, headers: &dyn Extractor) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Reader(headers)));
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!("cannot continue the message's trace: {e}");
    }
}

/// Writes the current span's trace context into `carrier`.
#[cfg(feature = "opentelemetry")]
pub(crate) fn inject(carrier: &mut dyn Injector) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut Writer(carrier)));
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn continue_trace(_: &Span, _: &dyn Extractor) {}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn inject(_: &mut dyn Injector) {}

/// A message's headers as OpenTelemetry reads them: the first value of a
/// name, if it is text.
#[cfg(feature = "opentelemetry")]
struct Reader<'a>(&'a dyn Extractor);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.get_all(key).first().copied() {
            Some(crate::carrier::HeaderValue::Bytes(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// A message's headers as OpenTelemetry writes them. Trace context is best
/// effort: a header the carrier refuses is skipped.
#[cfg(feature = "opentelemetry")]
struct Writer<'a>(&'a mut dyn Injector);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let Err(e) = self.0.set(key, &value) {
            tracing::debug!("trace context not written: {e}");
        }
    }
}
