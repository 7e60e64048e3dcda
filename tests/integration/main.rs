//! The integration tests, one binary: each module drives the built `mailtoken` as a
//! user or a mail program does, against the real servers `scripts/test` starts once
//! (the authorization server, Dovecot, gnome-keyring) and the real mail programs.
//! One binary links once, and shares `common` without dead code in any of them.

mod common;

mod add;
mod app_only;
mod app_password;
mod authserver_selftest;
mod browser_login;
mod cli;
mod clients;
mod clock;
mod concurrency;
mod daemon;
mod device_login;
mod faults;
mod git_send_email;
mod https_login;
mod keyring_login;
mod keyring_store;
mod kill_trials;
mod login_token;
mod mail_programs;
mod mailserver_selftest;
mod package;
mod provider_replies;
mod proxy;
mod relay;
mod scale;
mod security;
mod service_account;
mod slow_provider;
mod store_crash;
mod store_faults;
mod store_refusal;
mod system_service;
mod verify;
