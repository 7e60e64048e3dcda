//! The command line as a user meets it: usage errors, config errors with their place in
//! the file, provider listings, completions. No server needed.

use crate::common;

use common::mailtoken::*;

#[test]
fn a_malformed_config_exits_78_naming_file_line_and_column() {
    let env = Env::new(
        "",
        "[accounts.alice]\nprovider = \"google\"\nuser = alice@gmail.com\n",
    );
    let o = env.run(&["token", "alice"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    let path = env.config_path().display().to_string();
    assert!(e.contains(&format!("{path}:3:8:")), "{e}");
    assert!(e.contains("double quotes"), "{e}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn an_incomplete_account_exits_78_with_the_fix() {
    let env = Env::new(
        "",
        "[accounts.alice]\nprovider = \"google\"\nuser = \"a@gmail.com\"\n",
    );
    let o = env.run(&["token", "alice"]);
    assert_exit(&o, 78);
    let e = stderr(&o);
    assert!(
        e.contains(":1:1: account `alice` has no `client_id`"),
        "{e}"
    );
    assert!(e.contains("client_id = "), "{e}");
}

#[test]
fn a_missing_config_exits_78_with_an_example() {
    let env = Env::new("", "");
    std::fs::remove_file(env.config_path()).unwrap();
    let o = env.run(&["status"]);
    assert_exit(&o, 78);
    assert!(
        stderr(&o).contains("no config file at") && stderr(&o).contains("[accounts.alice]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unknown_account_lists_the_known_ones() {
    let env = Env::with_file_store(
        "[accounts.work]\nprovider = \"microsoft\"\nuser = \"b@c.com\"\nclient_id = \"x\"\n",
    );
    let o = env.run(&["token", "home"]);
    assert_exit(&o, 78);
    assert!(
        stderr(&o).contains("no account `home`") && stderr(&o).contains("accounts: work"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn token_before_login_exits_77_and_says_to_log_in() {
    let env = Env::with_file_store(
        "[accounts.work]\nprovider = \"microsoft\"\nuser = \"b@c.com\"\nclient_id = \"x\"\n",
    );
    let o = env.run(&["token", "work"]);
    assert_exit(&o, 77);
    assert!(
        stderr(&o).contains("Run `mailtoken login work`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_64() {
    let env = Env::new("", "");
    assert_exit(&env.run(&["token"]), 64);
    assert_exit(&env.run(&["token", "a", "--min-valid", "soon"]), 64);
    assert_exit(&env.run(&["frobnicate"]), 64);
    assert_exit(&env.run(&["--help"]), 0);
    assert_exit(&env.run(&["--version"]), 0);
}

#[test]
fn providers_lists_presets_and_details() {
    let env = Env::new("", "");
    let o = env.run(&["providers"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("google") && stdout(&o).contains("microsoft"));
    let o = env.run(&["providers", "google"]);
    assert_exit(&o, 0);
    let s = stdout(&o);
    assert!(
        s.contains("https://oauth2.googleapis.com/token") && s.contains("imap.gmail.com:993"),
        "{s}"
    );
    assert!(s.contains("access_type=offline prompt=consent"), "{s}");
    assert_exit(&env.run(&["providers", "aol"]), 64);
}

#[test]
fn providers_microsoft_shows_the_tenant_the_redirect_and_the_device_login() {
    let env = Env::new("", "");
    let o = env.run(&["providers", "microsoft"]);
    assert_exit(&o, 0);
    let s = stdout(&o);
    for needle in [
        "tenant         common (default; set `tenant` in the account: common, organizations, consumers, a tenant ID or a domain)",
        "redirect       http://localhost:PORT/",
        "device login   yes: `mailtoken login ACCOUNT --device`",
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode",
        "redirect_uri = \"https://localhost\"",
    ] {
        assert!(s.contains(needle), "{needle}: {s}");
    }
    let g = stdout(&env.run(&["providers", "google"]));
    assert!(
        g.contains("device login   no: Google's device flow does not grant the Gmail scope"),
        "{g}"
    );
}

#[test]
fn status_shows_each_accounts_tenant_redirect_and_device_login() {
    let env = Env::with_file_store(
        "[accounts.ms]\nprovider = \"microsoft\"\ntenant = \"organizations\"\nuser = \"bob@contoso.example\"\n\
         client_id = \"00000000-0000-0000-0000-000000000000\"\nredirect_uri = \"https://localhost\"\n\
         [accounts.g]\nprovider = \"google\"\nuser = \"g@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n",
    );
    let o = env.run(&["status"]);
    assert_exit(&o, 0);
    let s = stdout(&o);
    for (label, value) in [
        ("tenant:", "organizations"),
        (
            "redirect:",
            "https://localhost:PORT (TLS loopback listener with a certificate made for each login; or --paste)",
        ),
        (
            "device login:",
            "yes, `mailtoken login ms --device` (https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode)",
        ),
        (
            "redirect:",
            "http://127.0.0.1:PORT/ (loopback listener; or --paste)",
        ),
        (
            "device login:",
            "no: Gmail / Google Workspace does not allow it for mail",
        ),
    ] {
        let needle = format!("  {label:<14} {value}");
        assert!(s.contains(&needle), "{needle}: {s}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "ms", "--json"]))).unwrap();
    assert_eq!(v[0]["tenant"], "organizations");
    assert!(v[0]["device_login"].as_str().unwrap().starts_with("yes"));
}

#[test]
fn completions_and_man_page_are_generated() {
    let env = Env::new("", "");
    let o = env.run(&["completions", "bash"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("mailtoken"));
    let o = env.run(&["man"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(".TH mailtoken"));
}
