//! What happened to each record: reported to a callback as it happens, counted in the
//! consumer's [`Stats`], and logged.

use std::fmt;
use std::sync::Arc;

use jwt_relay::{EventOutcome, Stats};

/// One record's fate, as reported to [`ConsumerBuilder::on_event`](crate::ConsumerBuilder::on_event).
#[non_exhaustive]
#[derive(Debug)]
pub struct Event<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// What happened.
    pub outcome: EventOutcome<'a>,
}

/// The callback given to `on_event`.
pub(crate) type Callback = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Where events go: the counters, the callback, and the log.
#[derive(Clone, Default)]
pub(crate) struct Reporter {
    pub(crate) stats: Stats,
    pub(crate) callback: Option<Callback>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("stats", &self.stats)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl Reporter {
    /// Counts and logs the event, then calls the callback.
    pub(crate) fn report(&self, event: &Event<'_>) {
        self.stats.record(&event.outcome);
        // `format_args!` formats only if a log line is written, not for every record.
        let position = format_args!("partition {} offset {}", event.partition, event.offset);
        event.outcome.observe("kafka", event.topic, &position);
        if let Some(callback) = &self.callback {
            callback(event);
        }
    }
}
