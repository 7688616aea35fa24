//! The store conformance suite: every case is written once, as
//! `async fn case(store: Arc<dyn Store>)`, and run against both backends by
//! [`conformance!`] (a fresh SQLite file and a fresh PostgreSQL database per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `conformance!(case => case_sqlite, case_postgres);` runs `case(store)` on both backends.
/// `conformance!(with_url case => …)` passes the database URL as well, for cases that open
/// a second connection to the same database.
macro_rules! conformance {
    ($case:path => $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $crate::support::on_sqlite(|store, _url| $case(store)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $crate::support::on_postgres(|store, _url| $case(store)).await;
        }
    };
    (with_url $case:path => $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $crate::support::on_sqlite($case).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $crate::support::on_postgres($case).await;
        }
    };
}

/// Asserts that a `StoreResult` is an error matching a `StoreError` pattern.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            Err(other) => panic!("expected {}, got error {other:?}", stringify!($pattern)),
            Ok(value) => panic!("expected {}, got Ok({value:?})", stringify!($pattern)),
        }
    };
}

mod accounts;
mod applications;
mod audit;
mod consents;
mod external_apps;
mod grants;
mod imports;
mod memberships;
mod one_time_codes;
mod projects;
mod resources;
mod sessions;
mod signing_keys;
mod store;
mod support;
mod throttle;
mod users;
