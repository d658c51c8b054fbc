//! Declaring, in one call, a work stream and the stream that captures its
//! dead letters.

use async_nats::jetstream::{self, stream};

use crate::error::{Error, ErrorKind, Result};

/// A work stream and its dead-letter stream, for users who do not have them.
///
/// The work stream captures `subjects`; the dead-letter stream (named
/// `<stream>_DLQ` by default) captures where
/// [`JetStreamConsumer`](crate::JetStreamConsumer) sends rejected messages:
/// `<subject>.dlq` for each subject (`orders.*` → `orders.*.dlq`), or one
/// [fixed subject](Self::dead_letter_subject). A subject ending in `>`
/// would capture its own dead letters, so it needs a fixed dead-letter
/// subject outside it.
///
/// ```no_run
/// # async fn demo(js: async_nats::jetstream::Context) -> Result<(), jwt_relay_nats::Error> {
/// use jwt_relay_nats::Topology;
///
/// let declared = Topology::new("ORDERS", ["orders.*"]).declare(&js).await?;
/// // Dead letters of `orders.eu` land in `orders.eu.dlq`, kept by `ORDERS_DLQ`.
/// # let _ = declared;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Topology {
    stream: String,
    subjects: Vec<String>,
    dead_letter_stream: Option<String>,
    dead_letter_subject: Option<String>,
    storage: stream::StorageType,
}

/// The streams a [`Topology`] declared.
#[derive(Debug)]
pub struct Declared {
    /// The work stream: create your consumers on it.
    pub stream: stream::Stream,
    /// The dead-letter stream.
    pub dead_letter_stream: stream::Stream,
}

impl Topology {
    /// A work stream named `stream` capturing `subjects`, on file storage.
    pub fn new(stream: impl Into<String>, subjects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Topology {
            stream: stream.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            dead_letter_stream: None,
            dead_letter_subject: None,
            storage: stream::StorageType::File,
        }
    }

    /// Names the dead-letter stream (`<stream>_DLQ` by default).
    pub fn dead_letter_stream(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_stream = Some(name.into());
        self
    }

    /// One dead-letter subject for every subject (give the consumer the
    /// same one, with [`DeadLetter::subject`](crate::DeadLetter::subject) in
    /// [`JetStreamConsumer::dead_letter`](crate::JetStreamConsumer::dead_letter)).
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.dead_letter_subject = Some(subject.into());
        self
    }

    /// Where both streams keep their messages (file by default).
    pub fn storage(mut self, storage: stream::StorageType) -> Self {
        self.storage = storage;
        self
    }

    /// The work stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The dead-letter stream's name.
    pub fn dead_letter_stream_name(&self) -> String {
        self.dead_letter_stream
            .clone()
            .unwrap_or_else(|| format!("{}_DLQ", self.stream))
    }

    /// The subjects the dead-letter stream captures.
    pub fn dead_letter_subjects(&self) -> Result<Vec<String>> {
        if let Some(subject) = &self.dead_letter_subject {
            return Ok(vec![subject.clone()]);
        }
        self.subjects
            .iter()
            .map(|subject| {
                if subject.split('.').any(|token| token == ">") {
                    return Err(Error::new(
                        ErrorKind::Configuration,
                        format!(
                            "`{subject}` would capture its own dead letters (`{subject}.dlq` is not even a \
                             subject): set a dead-letter subject outside it"
                        ),
                    ));
                }
                Ok(format!("{subject}.dlq"))
            })
            .collect()
    }

    /// Creates both streams, or gets them if they exist.
    pub async fn declare(&self, jetstream: &jetstream::Context) -> Result<Declared> {
        let dead_letter_subjects = self.dead_letter_subjects()?;
        let stream = self
            .get_or_create(jetstream, &self.stream, self.subjects.clone())
            .await?;
        let dead_letter_stream = self
            .get_or_create(jetstream, &self.dead_letter_stream_name(), dead_letter_subjects)
            .await?;
        Ok(Declared {
            stream,
            dead_letter_stream,
        })
    }

    /// Deletes both streams (with their messages and consumers).
    pub async fn delete(&self, jetstream: &jetstream::Context) -> Result<()> {
        for name in [self.stream.clone(), self.dead_letter_stream_name()] {
            jetstream.delete_stream(&name).await.map_err(|e| {
                Error::new(ErrorKind::Broker, format!("cannot delete stream `{name}`: {e}")).with_source(e)
            })?;
        }
        Ok(())
    }

    async fn get_or_create(
        &self,
        jetstream: &jetstream::Context,
        name: &str,
        subjects: Vec<String>,
    ) -> Result<stream::Stream> {
        let config = stream::Config {
            name: name.to_owned(),
            subjects,
            storage: self.storage,
            ..stream::Config::default()
        };
        jetstream.get_or_create_stream(config).await.map_err(|e| {
            Error::new(ErrorKind::Broker, format!("cannot declare stream `{name}`: {e}")).with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_subjects_follow_the_work_subjects() {
        let t = Topology::new("ORDERS", ["orders.*", "refunds"]);
        assert_eq!(t.dead_letter_subjects().unwrap(), ["orders.*.dlq", "refunds.dlq"]);
        assert_eq!(t.dead_letter_stream_name(), "ORDERS_DLQ");
        let wide = Topology::new("ALL", ["shop.>"]);
        assert_eq!(
            wide.dead_letter_subjects().unwrap_err().kind(),
            ErrorKind::Configuration
        );
        let fixed = wide.dead_letter_subject("dead.shop").dead_letter_stream("DEAD");
        assert_eq!(fixed.dead_letter_subjects().unwrap(), ["dead.shop"]);
        assert_eq!(fixed.dead_letter_stream_name(), "DEAD");
    }
}
