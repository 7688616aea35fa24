//! End-to-end tests: a real server on a free port, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod testkit;

mod audit;
mod discovery_keys;
mod email_code;
mod external;
mod import;
mod interactive;
mod management_rules;
mod migration;
mod multi_node;
mod provisioning;
mod seed_flow;
mod token_endpoint;
