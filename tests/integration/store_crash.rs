//! Crash safety of the file store with real processes: a child saves records in a tight
//! loop and is killed with SIGKILL at random moments; after every kill the file must parse
//! and hold only records that were written completely, and no temp files may pile up.
//!
//! The child is this test binary itself, re-executed with `MAILTOKEN_CRASH_CHILD=DIR`.
//!
//! What is checked after each kill:
//! * `tokens.json` parses through `FileStore` (so a torn or truncated write fails);
//! * every record is whole: its refresh token (1-64 KiB) starts with its own length and a
//!   checksum of the rest, and its access token repeats the record's sequence number;
//! * no account's sequence number ever goes back (no older file resurrected);
//! * the directory holds only `tokens.json`, `tokens.json.lock` and at most one temp file
//!   `.tokens.json.XXXXXX.tmp` (the one the killed writer was filling: every writer
//!   removes leftovers under the lock, so they never accumulate).
#![cfg(unix)]

use mailtoken::record::TokenRecord;
use mailtoken::secret::Secret;
use mailtoken::store::TokenStore;
use mailtoken::store::file::FileStore;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHILD_ENV: &str = "MAILTOKEN_CRASH_CHILD";
const TEST_NAME: &str = "a_killed_writer_never_leaves_a_broken_file";
const ACCOUNTS: [&str; 3] = ["alice", "bob@example.com", "carol"];
const ROUNDS: u64 = 40;
/// Sequence numbers of round `r` start at `r * ROUND_SPAN`, so they grow across rounds.
const ROUND_SPAN: u64 = 1_000_000;

/// xorshift64*: a small deterministic generator (no rand crate needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A refresh token of exactly `len` bytes: `len=NNNNNN;sum=HHHHHHHHHHHHHHHH;` then padding.
fn make_token(rng: &mut Rng, len: usize) -> String {
    const HEADER: usize = "len=000000;sum=0000000000000000;".len();
    let padding: String = (HEADER..len)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect();
    let token = format!(
        "len={len:06};sum={:016x};{padding}",
        fnv1a(padding.as_bytes())
    );
    assert_eq!(token.len(), len);
    token
}

fn check_token(t: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("torn refresh token ({why}), {} bytes", t.len()));
    let (Some(len), Some(sum), Some(padding)) = (t.get(4..10), t.get(15..31), t.get(32..)) else {
        return bad("too short");
    };
    if len.parse::<usize>().ok() != Some(t.len()) {
        return bad("length");
    }
    if u64::from_str_radix(sum, 16).ok() != Some(fnv1a(padding.as_bytes())) {
        return bad("checksum");
    }
    Ok(())
}

/// The child: saves whole records as fast as it can until it is killed.
fn child(dir: &Path, round: u64) -> ! {
    let store = FileStore::new(dir.join("tokens.json"));
    let mut rng = Rng(std::process::id() as u64 | 1);
    for i in 0.. {
        let seq = round * ROUND_SPAN + i;
        let len = 1024 + rng.below(63 * 1024) as usize;
        let record = TokenRecord {
            refresh_token: Some(Secret::new(make_token(&mut rng, len))),
            access_token: Some(Secret::new(format!("seq-{seq}"))),
            obtained_at: seq,
            ..Default::default()
        };
        store
            .save(ACCOUNTS[(i % 3) as usize], &record)
            .expect("save");
        if i == 2 {
            // Every account has a record now: the parent may start its clock.
            println!("ready");
        }
    }
    unreachable!()
}

/// Kills the child if the parent panics, so a failing test leaves no writer behind.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks that every account holds a whole record; returns their sequence numbers.
fn check_records(dir: &Path) -> BTreeMap<&'static str, u64> {
    let store = FileStore::new(dir.join("tokens.json"));
    let mut seqs = BTreeMap::new();
    for account in ACCOUNTS {
        let record = store
            .load(account)
            .unwrap_or_else(|e| panic!("the file store does not parse: {e}"))
            .unwrap_or_else(|| panic!("{account} lost its record"));
        let rt = record.refresh_token.expect("a refresh token");
        check_token(rt.expose()).unwrap_or_else(|e| panic!("{account}: {e}"));
        let at = record.access_token.expect("an access token");
        assert_eq!(
            at.expose(),
            format!("seq-{}", record.obtained_at),
            "{account}: mixed-up record"
        );
        seqs.insert(account, record.obtained_at);
    }
    seqs
}

/// Checks that no account went back since `last`, and remembers the new numbers.
fn check_progress(last: &mut BTreeMap<&'static str, u64>, seqs: BTreeMap<&'static str, u64>) {
    for (account, seq) in &seqs {
        let before = last.get(account).copied().unwrap_or(0);
        assert!(*seq >= before, "{account} went back from {before} to {seq}");
    }
    *last = seqs;
}

/// Checks the directory after a kill; returns whether a temp file was left behind.
fn check_dir(dir: &Path) -> bool {
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        match name.as_str() {
            "tokens.json" | "tokens.json.lock" => {}
            n if n.starts_with(".tokens.json.") && n.ends_with(".tmp") => temps.push(name),
            _ => panic!("unexpected file {name} in the store directory"),
        }
    }
    assert!(temps.len() <= 1, "temp files pile up: {temps:?}");
    !temps.is_empty()
}

#[test]
fn a_killed_writer_never_leaves_a_broken_file() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let round = std::env::var("MAILTOKEN_CRASH_ROUND")
            .unwrap()
            .parse()
            .unwrap();
        child(Path::new(&dir), round);
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    let mut torn_moments = 0;
    let mut reads = 0;
    for round in 0..ROUNDS {
        let mut child = Killer(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    &format!("store_crash::{TEST_NAME}"),
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .env("MAILTOKEN_CRASH_ROUND", round.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // The harness prints "test NAME ... " before the child's "ready" on the same line.
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ready = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.ends_with("ready"));
            let _ = tx.send(ready);
        });
        let ready = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(ready, Ok(true), "the child did not save its first records");
        // Until the kill, read as a lock-free reader would: every read must see a whole
        // file (this is what catches an in-place write most reliably).
        let deadline = Instant::now() + Duration::from_millis(5 + rng.below(46));
        while Instant::now() < deadline {
            check_progress(&mut last, check_records(dir.path()));
            reads += 1;
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
        let rc = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        let status = child.0.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the child died on its own: {status}"
        );

        let seqs = check_records(dir.path());
        assert!(
            seqs.values().all(|&seq| seq >= round * ROUND_SPAN),
            "a record of an earlier round: {seqs:?}"
        );
        check_progress(&mut last, seqs);
        let temp_left = check_dir(dir.path());
        torn_moments += u32::from(temp_left);
    }
    eprintln!(
        "{ROUNDS} kills, {torn_moments} of them in the middle of a write; {reads} reads meanwhile"
    );
}
