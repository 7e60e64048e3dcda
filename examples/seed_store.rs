//! Benchmark fixture: stores a record with a valid access token (1 hour) for an account
//! of the config at $MAILTOKEN_CONFIG, in whatever store that config names, so that
//! `scripts/bench` can time `mailtoken token` on the cached path without a login.
//! The tokens are made up: nothing is sent anywhere.
//!
//!   cargo run --release --example seed_store -- ACCOUNT

use mailtoken::config::Config;
use mailtoken::record::{self, TokenRecord};
use mailtoken::secret::Secret;
use std::time::Duration;

fn main() {
    let account = std::env::args().nth(1).expect("usage: seed_store ACCOUNT");
    let config = Config::load_default().unwrap_or_else(|e| panic!("{e}"));
    let opened = mailtoken::store::open(&config.store).unwrap_or_else(|e| panic!("{e}"));
    let mut rec = TokenRecord {
        refresh_token: Some(Secret::new("bench-refresh-token")),
        logged_in_at: record::now(),
        scopes: vec!["mail".into()],
        ..Default::default()
    };
    rec.set_access_token(
        Secret::new("bench-access-token-".repeat(8)),
        Some(Duration::from_secs(3600)),
        record::now(),
    );
    opened
        .store
        .save(&account, &rec)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("seeded {account} in the {}", opened.store.describe());
}
