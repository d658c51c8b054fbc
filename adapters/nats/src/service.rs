//! Request/reply: the request's token verified before the service handler
//! runs, and a refused request answered at once with an error reply.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_nats::service::Request;
use async_nats::service::endpoint::Endpoint;
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use async_nats::{Client, HeaderMap, HeaderName, HeaderValue, Message, Subscriber};
use bytes::Bytes;
use jwt_relay::{AuthContext, Guard, MessageInfo, Outcome, run_handler};
use tracing::Instrument as _;

use crate::error::{Error, Result};
use jwt_relay::{EventOutcome, RunReport, Stats};

use crate::event::{Event, Reporter};
use crate::headers::{NatsHeadersRef, pairs};
use crate::run_loop::{run_loop, verify_ahead};
use crate::service_error::ServiceError;

/// Serves requests, NATS micro endpoints ([`serve_endpoint`](Self::serve_endpoint))
/// or plain subscriptions ([`serve_subscriber`](Self::serve_subscriber)),
/// verifying each request's token before the handler runs. The handler
/// runs with the verified identity in [`jwt_relay::scope`] and returns the
/// reply's payload or a [`ServiceError`].
///
/// A request is never left to time out: the caller gets an error reply at
/// once, with `Nats-Service-Error-Code` and `Nats-Service-Error` headers as
/// NATS micro sends them:
///
/// | what happened | code |
/// |---|---|
/// | the token was refused (missing, forged, expired, wrong audience, …) | 401 `Unauthorized: <kind>` |
/// | the handler refused a valid token ([`ServiceError::forbidden`]) | 403 |
/// | the token cannot be checked now (key set down) | 503 |
/// | the handler panicked | 500 |
/// | our setup is wrong (then serving stops with the error) | 500 |
///
/// The reply names only the error kind; the full reason goes to
/// [`on_event`](Self::on_event) and the log.
///
/// The metrics and spans name the served subject as given to `serve_*`
/// (`orders.*`), not each request's (`orders.eu`): one endpoint is one
/// `destination` series, however many subjects its wildcards match.
#[derive(Clone)]
pub struct NatsService {
    client: Client,
    guard: Guard,
    concurrency: usize,
    reporter: Reporter,
}

impl fmt::Debug for NatsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsService")
            .field("guard", &self.guard)
            .field("concurrency", &self.concurrency)
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

/// One verified request, as a service handler receives it. `Debug` shows
/// the header names, never their values.
pub struct ServiceRequest {
    context: AuthContext,
    message: Message,
}

impl ServiceRequest {
    /// The verified identity of the caller.
    pub fn context(&self) -> &AuthContext {
        &self.context
    }

    /// The subject the request was sent to.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// The request's body.
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// The request's headers (the token header included: async-nats's
    /// `Debug` of a [`HeaderMap`] shows it).
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message.headers.as_ref()
    }

    /// The whole NATS message (its `Debug`, async-nats's, shows the token).
    pub fn message(&self) -> &Message {
        &self.message
    }
}

impl fmt::Debug for ServiceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = pairs(self.message.headers.as_ref()).map(|(n, _)| n).collect();
        f.debug_struct("ServiceRequest")
            .field("context", &self.context)
            .field("subject", &self.subject())
            .field("payload_len", &self.message.payload.len())
            .field("headers", &names)
            .finish()
    }
}

/// Where a reply goes.
enum Responder<'a> {
    Micro(&'a async_nats::service::Request),
    Plain(&'a Client, &'a Message),
}

impl NatsService {
    /// Replies through `client` (plain subscriptions) and judges requests
    /// with `guard`; one request at a time.
    pub fn new(client: Client, guard: Guard) -> Self {
        NatsService {
            client,
            guard,
            concurrency: 1,
            reporter: Reporter::default(),
        }
    }

    /// How many requests are handled at once (1). While that many are, as
    /// many more (at least 16) are read ahead and their tokens verified on the
    /// runtime's other threads.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// Calls `callback` with what happened to each request (refusals
    /// included), as it happens.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.reporter.set_callback(Arc::new(callback));
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.reporter.stats().clone()
    }

    /// Serves a NATS micro endpoint (async-nats `service`) until `shutdown`
    /// completes (requests in flight are answered first) or a halt.
    /// `subject` is the subject the endpoint was added with, its group's
    /// prefix included (async-nats does not tell): the metrics' and spans'
    /// `destination`.
    pub async fn serve_endpoint<H, Fut, S>(
        &self,
        subject: &str,
        endpoint: Endpoint,
        handler: H,
        shutdown: S,
    ) -> Result<RunReport>
    where
        H: Fn(ServiceRequest) -> Fut,
        Fut: Future<Output = Result<Bytes, ServiceError>>,
        S: Future<Output = ()>,
    {
        let handler = &handler;
        let reporter = &self.reporter.with_destination(subject);
        let mut ahead = verify_ahead(&self.guard);
        let ahead = move |request: &Request| ahead(&request.message);
        run_loop(
            endpoint,
            self.concurrency,
            ahead,
            shutdown,
            None,
            |request, _| async move {
                let message = &request.message;
                self.process(reporter, message, Responder::Micro(&request), handler)
                    .instrument(reporter.span(message))
                    .await
            },
        )
        .await?;
        Ok(self.reporter.stats().snapshot())
    }

    /// Serves requests arriving on a plain (or queue) subscription, replying
    /// on each request's reply subject, until `shutdown` completes or a halt.
    /// `subject` is the subject subscribed to (async-nats does not tell): the
    /// metrics' and spans' `destination`.
    pub async fn serve_subscriber<H, Fut, S>(
        &self,
        subject: &str,
        subscriber: Subscriber,
        handler: H,
        shutdown: S,
    ) -> Result<RunReport>
    where
        H: Fn(ServiceRequest) -> Fut,
        Fut: Future<Output = Result<Bytes, ServiceError>>,
        S: Future<Output = ()>,
    {
        let handler = &handler;
        let reporter = &self.reporter.with_destination(subject);
        run_loop(
            subscriber,
            self.concurrency,
            verify_ahead(&self.guard),
            shutdown,
            None,
            |message, _| async move {
                self.process(
                    reporter,
                    &message,
                    Responder::Plain(&self.client, &message),
                    handler,
                )
                .instrument(reporter.span(&message))
                .await
            },
        )
        .await?;
        Ok(self.reporter.stats().snapshot())
    }

    async fn process<H, Fut>(
        &self,
        reporter: &Reporter,
        message: &Message,
        responder: Responder<'_>,
        handler: &H,
    ) -> Result<()>
    where
        H: Fn(ServiceRequest) -> Fut,
        Fut: Future<Output = Result<Bytes, ServiceError>>,
    {
        let subject = message.subject.as_str();
        let info = MessageInfo::new(subject);
        let reply = match self.guard.check(&NatsHeadersRef::of(message), &info).await {
            Outcome::Accept(context) => {
                let request = ServiceRequest {
                    context: context.clone(),
                    message: message.clone(),
                };
                let mut answer = None;
                let ran = run_handler(context.clone(), async {
                    answer = Some(handler(request).await);
                    Ok::<(), Infallible>(())
                })
                .await;
                match (ran, answer) {
                    (Ok(()), Some(answer)) => {
                        report(reporter, subject, EventOutcome::Accepted(&context));
                        answer
                    }
                    (Err(failure), _) => {
                        reporter.handler_failed();
                        report(
                            reporter,
                            subject,
                            EventOutcome::Rejected {
                                reason: &failure,
                                dead_letter: None,
                            },
                        );
                        Err(ServiceError::internal())
                    }
                    // run_handler returns Ok only once the handler answered.
                    (Ok(()), None) => Err(ServiceError::internal()),
                }
            }
            Outcome::Reject(reason) => {
                report(
                    reporter,
                    subject,
                    EventOutcome::Rejected {
                        reason: &reason,
                        dead_letter: None,
                    },
                );
                Err(ServiceError::unauthorized(reason.kind()))
            }
            Outcome::Retry(reason, delay) => {
                report(
                    reporter,
                    subject,
                    EventOutcome::Retry {
                        reason: &reason,
                        delay,
                    },
                );
                Err(ServiceError::unavailable(reason.kind(), delay))
            }
            Outcome::Halt(reason) => {
                report(reporter, subject, EventOutcome::Halted(&reason));
                respond(responder, Err(ServiceError::internal())).await;
                return Err(Error::halted(reason));
            }
        };
        respond(responder, reply).await;
        Ok(())
    }
}

/// Sends the reply; a failure is logged (the caller times out).
async fn respond(responder: Responder<'_>, reply: Result<Bytes, ServiceError>) {
    let sent = match responder {
        Responder::Micro(request) => request
            .respond(reply.map_err(|e| e.to_micro()))
            .await
            .map_err(|e| e.to_string()),
        Responder::Plain(client, message) => {
            let Some(to) = message.reply.clone() else {
                tracing::warn!(subject = %message.subject, "a request without a reply subject: no reply sent");
                return;
            };
            match reply {
                Ok(payload) => client.publish(to, payload).await,
                Err(error) => {
                    client
                        .publish_with_headers(to, error_headers(&error), Bytes::new())
                        .await
                }
            }
            .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = sent {
        tracing::warn!("cannot send the reply: {e}");
    }
}

/// The headers of an error reply (the status is printable ASCII by
/// construction, so both always parse).
fn error_headers(error: &ServiceError) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let pairs = [
        (NATS_SERVICE_ERROR, error.status().to_owned()),
        (NATS_SERVICE_ERROR_CODE, error.code().to_string()),
    ];
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (name.parse::<HeaderName>(), value.parse::<HeaderValue>()) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Reports what happened to a core NATS message (no stream coordinates).
fn report(reporter: &Reporter, subject: &str, outcome: EventOutcome<'_>) {
    reporter.report(&Event {
        subject,
        stream_sequence: None,
        delivered: None,
        outcome,
    });
}
