//! Request/reply: the request's token verified before the service handler
//! runs, and a refused request answered at once with an error reply.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::service::Request;
use async_nats::service::endpoint::Endpoint;
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use async_nats::{Client, HeaderMap, HeaderName, HeaderValue, Message, Subscriber};
use bytes::Bytes;
use jwt_relay::consume::{
    CopyFailed, DeadLetterCopy, Engine, Event, Incoming, Reporter, Retried, Settle, Step, Tries,
};
use jwt_relay::consume::{Position, Stats};
use jwt_relay::{AuthContext, ErrorKind, Guard, RunReport};

use crate::error::{Error, Result};
use crate::headers::{NatsHeadersRef, pairs};
use crate::run_loop::{DRAIN_TIMEOUT, run_loop, verify_ahead};
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
///
/// An instance that stops leaves its queue group gracefully: it takes no more requests, and
/// answers those it had already received before `serve_*` returns (see
/// [`serve_endpoint`](Self::serve_endpoint)).
#[derive(Clone)]
pub struct NatsService {
    client: Client,
    engine: Engine,
    concurrency: usize,
    drain_timeout: Duration,
}

impl fmt::Debug for NatsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsService")
            .field("engine", &self.engine)
            .field("concurrency", &self.concurrency)
            .field("drain_timeout", &self.drain_timeout)
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
#[derive(Clone, Copy)]
enum Responder<'a> {
    Micro(&'a async_nats::service::Request),
    Plain(&'a Client, &'a Message),
}

impl NatsService {
    /// Replies through `client` (plain subscriptions) and judges requests
    /// with `guard`; one request at a time, a 30 s drain when serving stops.
    pub fn new(client: Client, guard: Guard) -> Self {
        NatsService {
            client,
            // A request is answered once: a failing handler is not called again.
            engine: Engine::new(guard, Reporter::new("nats")).max_attempts(1),
            concurrency: 1,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }

    /// How many requests are handled at once (1). While that many are, as
    /// many more (at least 16) are read ahead and their tokens verified on the
    /// runtime's other threads.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// How long serving, once it stopped taking requests, still answers those the client had
    /// already received (30 s; see [`serve_endpoint`](Self::serve_endpoint)). Those not started
    /// by then get no answer (their callers time out), with a warning. Zero: no drain, they
    /// all go unanswered.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Calls `callback` with what happened to each request (refusals
    /// included), as it happens.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.engine = self.engine.on_event(callback);
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats().clone()
    }

    /// Serves a NATS micro endpoint (async-nats `service`) until `shutdown`
    /// completes, the endpoint ends (its service was stopped: the requests it had received are
    /// answered first) or a halt. `subject` is the subject the endpoint was added with, its
    /// group's prefix included (async-nats does not tell): the metrics' and spans'
    /// `destination`.
    ///
    /// On shutdown it stops the endpoint ([`Endpoint::stop`]: the server routes the requests
    /// to the service's other instances from then on), answers every request the client had
    /// already received, lets those in flight finish, and returns. This lasts at most the
    /// [`drain_timeout`](Self::drain_timeout) (30 s): the requests not started by then get no
    /// answer, with a warning. Requests the server sent just before it took the unsubscribe
    /// and that reach the client after it get none either: async-nats 0.51 forgets the
    /// endpoint's subscription at once. After a halt, the requests not started get no answer.
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
        S: Future,
    {
        let handler = &handler;
        let mut ahead = verify_ahead(self.engine.guard());
        let ahead = move |request: &Request| ahead(&request.message);
        run_loop(
            endpoint,
            self.concurrency,
            ahead,
            shutdown,
            Some(self.drain_timeout),
            None,
            |request, _| async move {
                let message = &request.message;
                self.process(subject, message, Responder::Micro(&request), handler)
                    .await
            },
        )
        .await?;
        Ok(self.engine.stats().snapshot())
    }

    /// Serves requests arriving on a plain (or queue) subscription, replying
    /// on each request's reply subject, until `shutdown` completes, the subscription ends, or
    /// a halt. `subject` is the subject subscribed to (async-nats does not tell): the
    /// metrics' and spans' `destination`.
    ///
    /// On shutdown it drains the subscription
    /// ([`Subscriber::drain`](async_nats::Subscriber::drain): unsubscribed on the server, it
    /// still yields what the client had received), answers every request already received,
    /// lets those in flight finish, and returns, within the
    /// [`drain_timeout`](Self::drain_timeout) as [`serve_endpoint`](Self::serve_endpoint)
    /// does. Requests the server sent just before it took the unsubscribe and that reach the
    /// client after it can still go unanswered: async-nats 0.51 forgets the subscription on its
    /// connection's next turn, without waiting for the server's answer.
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
        S: Future,
    {
        let handler = &handler;
        run_loop(
            subscriber,
            self.concurrency,
            verify_ahead(self.engine.guard()),
            shutdown,
            Some(self.drain_timeout),
            None,
            |message, _| async move {
                self.process(
                    subject,
                    &message,
                    Responder::Plain(&self.client, &message),
                    handler,
                )
                .await
            },
        )
        .await?;
        Ok(self.engine.stats().snapshot())
    }

    /// Decides on one request with the engine; [`Replier`] answers it whatever the outcome.
    async fn process<H, Fut>(
        &self,
        destination: &str,
        message: &Message,
        responder: Responder<'_>,
        handler: &H,
    ) -> Result<()>
    where
        H: Fn(ServiceRequest) -> Fut,
        Fut: Future<Output = Result<Bytes, ServiceError>>,
    {
        let headers = NatsHeadersRef::of(message);
        let incoming = Incoming {
            headers: &headers,
            destination,
            subject: message.subject.as_str(),
            position: Position::None,
            published: None,
            tries: Tries::default(),
        };
        let answer = Mutex::new(None);
        let mut replier = Replier {
            responder,
            answer: &answer,
        };
        let handle = |context, _| {
            let request = ServiceRequest {
                context,
                message: message.clone(),
            };
            let answer = &answer;
            async move {
                let reply = handler(request).await;
                *answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(reply);
                Ok::<(), Infallible>(())
            }
        };
        match self.engine.process(&incoming, &mut replier, handle).await {
            Step::Done => Ok(()),
            Step::Again { delay, reason, .. } => {
                respond(
                    replier.responder,
                    Err(ServiceError::unavailable(reason.kind(), delay)),
                )
                .await;
                Ok(())
            }
            Step::Halt(reason) => Err(Error::halted(reason)),
            Step::Stop(never) => match never {},
        }
    }
}

/// The service's settle verbs: every outcome is a reply. The handler's answer on success; 401
/// for a refused token; 500 for a failed handler or a halt; and for a token that cannot be
/// checked now, nothing here: the engine's [`Step::Again`] is answered with 503.
struct Replier<'a> {
    responder: Responder<'a>,
    answer: &'a Mutex<Option<std::result::Result<Bytes, ServiceError>>>,
}

impl Settle for Replier<'_> {
    type Stop = Infallible;

    async fn ack(&mut self) -> bool {
        let answer = self.answer.lock().unwrap_or_else(PoisonError::into_inner).take();
        // The engine acknowledges only once the handler answered.
        respond(
            self.responder,
            answer.unwrap_or_else(|| Err(ServiceError::internal())),
        )
        .await;
        true
    }

    async fn retry(&mut self, _delay: Duration, _tries: Tries) -> std::result::Result<Retried, Infallible> {
        Ok(Retried::Hold)
    }

    async fn dead_letter(
        &mut self,
        copy: &DeadLetterCopy<'_>,
    ) -> std::result::Result<Option<String>, CopyFailed<Infallible>> {
        let error = match copy.reason.kind() {
            ErrorKind::Handler => ServiceError::internal(),
            kind => ServiceError::unauthorized(kind),
        };
        respond(self.responder, Err(error)).await;
        Ok(None)
    }

    async fn discard(&mut self, reason: &jwt_relay::Error) -> bool {
        respond(self.responder, Err(ServiceError::unauthorized(reason.kind()))).await;
        true
    }

    async fn release(&mut self) {
        respond(self.responder, Err(ServiceError::internal())).await;
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
