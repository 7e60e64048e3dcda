//! Benchmark fixture: stores a record with a valid access token (1 hour) and a refresh
//! token for each ACCOUNT of the config at $MAILTOKEN_CONFIG, in whatever store that
//! config names, so that `scripts/bench` can time `mailtoken token` on the cached path
//! without a login. With `--expired` the access token expired 100 s ago (obtained
//! 3700 s ago), so the next `token` call must refresh it at the account's token_url.
//! The tokens are made up: nothing is sent anywhere.
//!
//!   cargo run --release --example seed_store -- [--expired] ACCOUNT...

use mailtoken::config::Config;
use mailtoken::record::{self, TokenRecord};
use mailtoken::secret::Secret;
use std::time::Duration;

fn main() {
    let mut expired = false;
    let mut accounts = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--expired" => expired = true,
            _ => accounts.push(a),
        }
    }
    if accounts.is_empty() {
        eprintln!("usage: seed_store [--expired] ACCOUNT...");
        std::process::exit(64);
    }
    let config = Config::load_default().unwrap_or_else(|e| panic!("{e}"));
    let opened = mailtoken::store::open(&config.store).unwrap_or_else(|e| panic!("{e}"));
    let now = record::now();
    let obtained = if expired { now - 3700 } else { now };
    for account in &accounts {
        let mut rec = TokenRecord {
            refresh_token: Some(Secret::new("bench-refresh-token")),
            logged_in_at: obtained,
            scopes: vec!["mail".into()],
            ..Default::default()
        };
        rec.set_access_token(
            Secret::new("bench-access-token-".repeat(8)),
            Some(Duration::from_secs(3600)),
            obtained,
        );
        opened
            .store
            .save(account, &rec)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!(
        "seeded {} account(s){} in the {}",
        accounts.len(),
        if expired { ", expired," } else { "" },
        opened.store.describe()
    );
}
