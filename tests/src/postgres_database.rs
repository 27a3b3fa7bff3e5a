//! Fresh databases on the test PostgreSQL server that `cargo xtask test` starts on loopback
//! (`DPO_TEST_POSTGRES_URL`); a missing server is a failure, never a skip.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The URL of a new, empty database.
pub fn fresh_postgres_database() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::var("DPO_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "DPO_TEST_POSTGRES_URL is not set: run the tests with `cargo xtask test`, which starts \
             a PostgreSQL server on loopback, or point it at one (postgres://user@host:port/db)"
        )
    });
    let name = format!(
        "pairs_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut client = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server at {base}: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (server, _) = base.rsplit_once('/').expect("a database in the URL");
    format!("{server}/{name}")
}
