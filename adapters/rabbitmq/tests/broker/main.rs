//! The adapter against the real RabbitMQ (`AMQP_ADDR`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): every test declares queues of its own, asserts
//! what a user would check (the verified subject, what is in the dead-letter queue, every id
//! delivered), and deletes its queues. Unreachable broker: skipped loudly, or failed under
//! `CI=true` (see `support::broker::broker`).

#![allow(clippy::unwrap_used, clippy::panic_in_result_fn)]

mod support;

mod dead_letter;
mod grace;
mod handler_errors;
mod headers;
mod hostile;
mod many_instances;
mod outage;
mod propagation;
mod publisher;
mod reconnect;
mod round_trip;
mod shutdown;
mod stop;
mod token_outage;
