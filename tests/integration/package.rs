//! Installing mailtoken like a real tool: the crate `cargo package` would publish, and
//! the Debian package scripts/test builds with `scripts/package-deb --dev` (cargo deb,
//! from this run's build), installed with `dpkg -i` into the machine's /usr, used from
//! /usr/bin, and removed. Needs root, as scripts/test runs in CI.

use crate::common;

use common::mailtoken::*;
use std::process::Command;

#[test]
fn cargo_package_ships_the_program_and_its_docs_and_leaves_the_tests_data_out() {
    let o = Command::new(env!("CARGO"))
        .args(["package", "--list", "--allow-dirty", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "cargo package --list: {}", stderr(&o));
    let list = stdout(&o);
    for want in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "README.md",
        "src/main.rs",
        "src/front.rs",
        "integrations/systemd/mailtoken.service",
    ] {
        assert!(
            list.lines().any(|l| l == want),
            "{want} is not in the package:\n{list}"
        );
    }
    for l in list.lines() {
        assert!(
            !l.starts_with("tests/")
                && !l.starts_with("benches/")
                && !l.starts_with("fuzz/")
                && !l.starts_with("scripts/"),
            "{l} is in the package"
        );
    }
}

fn deb() -> String {
    std::env::var("MAILTOKEN_TEST_DEB")
        .expect("MAILTOKEN_TEST_DEB is not set: run scripts/test, which builds the package (scripts/package-deb --dev)")
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

#[test]
fn the_debian_package_installs_runs_from_usr_bin_and_is_removed_cleanly() {
    let deb = deb();
    // Never over a mailtoken the machine had before the test.
    let before = sh("dpkg-query -W -f='${Status}' mailtoken 2>/dev/null");
    assert!(
        !stdout(&before).contains("installed") || stdout(&before).contains("not-installed"),
        "a mailtoken package is already installed here; the test will not replace it"
    );
    assert!(
        !std::path::Path::new("/usr/bin/mailtoken").exists(),
        "/usr/bin/mailtoken exists already"
    );
    let o = sh(&format!("dpkg -i {deb}"));
    assert!(o.status.success(), "dpkg -i: {}{}", stdout(&o), stderr(&o));
    let files = stdout(&sh("dpkg -L mailtoken"));
    let regular: Vec<&str> = files
        .lines()
        .filter(|f| std::path::Path::new(f).is_file())
        .collect();
    assert!(regular.len() >= 10, "{files}");
    let result = std::panic::catch_unwind(|| installed_package_works(&files));
    let o = sh("dpkg -r mailtoken");
    assert!(o.status.success(), "dpkg -r: {}{}", stdout(&o), stderr(&o));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    let status = stdout(&sh("dpkg-query -W -f='${Status}' mailtoken 2>/dev/null"));
    assert!(!status.contains(" installed"), "still installed: {status}");
    for f in regular {
        assert!(
            !std::path::Path::new(f).exists(),
            "{f} is left after dpkg -r"
        );
    }
}

fn installed_package_works(files: &str) {
    for want in [
        "/usr/bin/mailtoken",
        "/usr/bin/mailtoken-core",
        "/usr/bin/mailtoken-add",
        "/usr/share/man/man1/mailtoken.1.gz",
        "/usr/share/bash-completion/completions/mailtoken",
        "/usr/share/zsh/vendor-completions/_mailtoken",
        "/usr/share/fish/vendor_completions.d/mailtoken.fish",
        "/usr/lib/systemd/user/mailtoken.service",
        "/usr/lib/systemd/user/mailtoken.socket",
    ] {
        assert!(
            files.lines().any(|l| l == want),
            "{want} is not in the package:\n{files}"
        );
    }
    let unit = std::fs::read_to_string("/usr/lib/systemd/user/mailtoken.service").unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/mailtoken serve"),
        "{unit}"
    );

    let o = Command::new("/usr/bin/mailtoken")
        .arg("--version")
        .output()
        .unwrap();
    let v = stdout(&o);
    assert!(
        v.starts_with(&format!("mailtoken {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let o = Command::new("/usr/bin/mailtoken")
        .arg("providers")
        .output()
        .unwrap();
    assert!(
        o.status.success() && stdout(&o).contains("google"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // One token, through the installed front and core, for an account logged in at the
    // test authorization server.
    let login = unique_login("deb");
    let env = Env::with_file_store(&account_toml("deb", &login, Client::Native));
    assert_exit(&env.login("deb", &login), 0);
    let mut c = with_env_of(&env.cmd(), "/usr/bin/mailtoken");
    let o = c.args(["token", "deb"]).output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o).trim(),
        env.stored("deb")["access_token"].as_str().unwrap()
    );

    // man renders the page; bash loads the completions and completes a command.
    let o = sh("MANWIDTH=80 man -P cat mailtoken 2>&1");
    let page = stdout(&o);
    assert!(
        o.status.success() && page.contains("mailtoken") && page.contains("add"),
        "man: {page}"
    );
    let o = sh(
        "bash -c 'source /usr/share/bash-completion/completions/mailtoken && complete -p mailtoken && \
         COMP_WORDS=(mailtoken ad) COMP_CWORD=1 COMP_LINE=\"mailtoken ad\" COMP_POINT=12 && _mailtoken mailtoken ad mailtoken && echo \"${COMPREPLY[@]}\"'",
    );
    let out = stdout(&o);
    assert!(
        o.status.success()
            && out.contains("-F _mailtoken mailtoken")
            && out
                .lines()
                .last()
                .unwrap_or("")
                .split(' ')
                .any(|w| w == "add"),
        "bash completion: {out}{}",
        stderr(&o)
    );
}
