//! Many accounts in one daemon, against the real authorization server: however many
//! accounts the daemon keeps fresh, each one's token is renewed once per refresh cycle
//! (`schedule::refresh_at`), never twice. App-only accounts (the client credentials
//! grant, RFC 6749 §4.4), one registered client each, so nobody logs in and the
//! server's counters (`app_grants` per client) count each account's requests.
//!
//! The count: 100 accounts whose tokens live 10 s, watched for 21 s (two lifetimes;
//! a token of 10 s is renewed 5 s before it ends: four or five renewals each, one
//! request per token), about 23 s in all. Why not 1,000: the test server keeps
//! clients, tokens and sessions in oidc-provider's memory adapter, one LRU of 1,000
//! entries (`node_modules/oidc-provider/lib/adapters/memory_adapter.js`); 1,000
//! registered clients alone fill it (measured: the first account's client was gone,
//! `invalid_client`, before its first request), and every token is one more entry, so
//! a large count would also push out what tests running alongside keep there. 100
//! accounts make about 600 entries in 23 s (200 passed alone, with 1,200). The 1,000
//! accounts' time and memory are scripts/bench's section 8.

use crate::common;

use common::authserver::{self, App};
use common::mailtoken::*;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 100;
/// The tokens' lifetime at the server, in seconds.
const LIFETIME: u32 = 10;
const WATCH: Duration = Duration::from_secs(21);

fn config(apps: &[App]) -> String {
    let mut text = String::from("timeout = \"10s\"\n[store]\nkind = \"file\"\n");
    for (i, app) in apps.iter().enumerate() {
        text.push_str(&format!(
            "[accounts.a{i:03}]\nauth = \"client_credentials\"\nuser = \"{}\"\n\
             token_url = \"{}/token\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
             scopes = [\"mail\"]\n",
            app.mailbox,
            authserver::issuer(),
            app.client_id,
            app.client_secret,
        ));
    }
    text
}

#[test]
fn with_100_accounts_each_token_is_renewed_once_per_cycle_and_never_twice() {
    let apps: Vec<App> = rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..ACCOUNTS {
            let mailbox = unique_login(&format!("scale{i}"));
            set.spawn(async move { (i, authserver::register_app(&mailbox, Some(LIFETIME)).await) });
        }
        let mut apps: Vec<(usize, App)> = set.join_all().await;
        apps.sort_by_key(|(i, _)| *i);
        apps.into_iter().map(|(_, a)| a).collect()
    });
    let env = Env::with_file_store("");
    env.write_config(&config(&apps));
    let daemon = env.serve();
    let ask = |i: usize| {
        let reply = daemon
            .try_raw(
                format!(
                    "{{\"v\":1,\"op\":\"token\",\"account\":\"a{i:03}\",\"format\":\"raw\",\"min_valid\":1,\"for\":\"imap\",\"wait_ms\":0}}\n"
                )
                .as_bytes(),
            )
            .unwrap();
        assert!(reply.contains("\"ok\":true"), "a{i:03}: {reply}");
    };
    // An app-only account's first token comes with its first request, as a mail
    // program makes it; from then on the daemon renews it ahead of expiry.
    let start = Instant::now();
    let firsts: Vec<f64> = (0..ACCOUNTS)
        .map(|i| {
            ask(i);
            start.elapsed().as_secs_f64()
        })
        .collect();
    std::thread::sleep(WATCH);
    let grants: Vec<u64> = apps
        .iter()
        .map(|a| stats(&format!("client:{}", a.client_id), "app_grants"))
        .collect();
    let end = start.elapsed().as_secs_f64();
    // Every account is still served from memory (after the count: these ask for
    // nothing new).
    for i in 0..ACCOUNTS {
        ask(i);
    }
    drop(daemon);

    // A token obtained at second s is renewed at s + LIFETIME / 2 (whole seconds), so
    // a cycle is 4 to 5 s of real time, plus the time a renewal waits for the
    // daemon's two blocking threads when many fall due together (up to 1 s more). One
    // request per token: the first one, then one per cycle until the count.
    let cycle = f64::from(LIFETIME / 2);
    let bounds = |first: f64| {
        let left = end - first;
        (
            1 + (left / (cycle + 1.0)).floor() as u64,
            1 + (left / (cycle - 1.0)).floor() as u64,
        )
    };
    let wrong: Vec<String> = grants
        .iter()
        .zip(&firsts)
        .enumerate()
        .filter_map(|(i, (g, f))| {
            let (least, most) = bounds(*f);
            (!(least..=most).contains(g)).then(|| {
                format!("a{i:03}: {g} requests, first at +{f:.1} s, {least} to {most} allowed")
            })
        })
        .collect();
    let total: u64 = grants.iter().sum();
    assert!(
        wrong.is_empty(),
        "{ACCOUNTS} accounts, {LIFETIME} s tokens, counted at +{end:.1} s: {} accounts off ({total} requests in all): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)],
    );
    // Renewals really happened: at least two per account.
    assert!(grants.iter().all(|g| *g >= 3), "{grants:?}");
}
