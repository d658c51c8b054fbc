//! What the broker tests share.
#![allow(dead_code, unreachable_pub)]

pub mod broker;
pub mod jwks_server;
pub mod tokens;
