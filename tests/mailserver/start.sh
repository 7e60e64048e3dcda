#!/usr/bin/env bash
# Starts a private Dovecot 2.3 (IMAP, POP3, submission) for the tests, plus the SMTP
# sink its submission service relays to, in the background and leaves them running.
# Tokens are checked by Dovecot's oauth2 passdb through RFC 7662 introspection at the
# running test authorization server ($MAILTOKEN_TEST_ISSUER, started first).
#
# Usage:   eval "$(bash tests/mailserver/start.sh)"
#
# Stdout (only shell assignments):
#   MAILSERVER_DIR=DIR         run directory (config, TLS, logs, mail, sink)
#   MAILSERVER_PID=N           the Dovecot master (stop it with: kill "$MAILSERVER_PID")
#   MAILSERVER_LOG=FILE        Dovecot's log (auth decisions are logged: auth_verbose)
#   MAIL_HOST=127.0.0.1
#   MAIL_IMAP_PORT=N           IMAP, plain start, STARTTLS offered
#   MAIL_IMAPS_PORT=N          IMAP over implicit TLS
#   MAIL_POP3_PORT=N           POP3, plain start, STLS offered
#   MAIL_POP3S_PORT=N          POP3 over implicit TLS
#   MAIL_SUBMISSION_PORT=N     submission (587-style), plain start, STARTTLS offered
#   MAIL_SUBMISSIONS_PORT=N    submissions (465-style), implicit TLS
#   MAIL_CA=FILE               the throw-away CA that signed the server certificate
#                              (SANs DNS:localhost, IP:127.0.0.1, IP:::1)
#   MAIL_SINK_DIR=DIR          every relayed message lands here as one *.eml file
#   MAIL_SINK_PID=N            the SMTP sink (stop it with: kill "$MAIL_SINK_PID")
# Exit status: 0 once every port has answered with its greeting (and, on the plain
# ports, upgraded with STARTTLS/STLS, with the certificate checked against MAIL_CA);
# non-zero otherwise, with the tail of the Dovecot log on stderr and everything that
# was started killed.
#
# What the server accepts (see the generated DIR/conf/dovecot.conf):
#   - XOAUTH2 / OAUTHBEARER: only the oauth2 passdb (passdb `mechanisms` filter), which
#     introspects the token as resource server mail-rs; the token must be active, carry
#     scope `mail`, and its `email` claim (the authorization server puts the login name
#     there) is the user. Any user name works; there is no user list.
#   - PLAIN / LOGIN: only the passwd-file passdb DIR/conf/users, app passwords:
#       app@example.test   app-pass-word-1234
#       app2@example.test  app-pass-word-5678
#       add@srv.test       add-pass-word-9012   (mailtoken add's tests, tests/discovery/)
#       add@wk.test        add-pass-word-3456
#       add@none.test      add-pass-word-7890
#   - userdb static (allow_all_users): the mailbox of user U (lower-cased, as Dovecot's
#     auth_username_format %Lu does) is the Maildir DIR/mail/U/Maildir; a file written
#     into its new/ (via tmp/ and a rename) is an INBOX message for IMAP and POP3.
#   - Submission relays to the sink (no TLS, no auth), which stores each message in
#     MAIL_SINK_DIR.
#   - Failures answer at once: auth_failure_delay = 0, and the anvil auth penalty is
#     off (its socket has mode 0).
#   - On 127.0.0.1 Dovecot treats the client as secure and offers AUTH before TLS.
#
# Environment:
#   MAILTOKEN_TEST_ISSUER   issuer URL of the test authorization server (required)
#   MAILSERVER_DIR          run directory (default: a new mktemp dir; created if missing)
#   DOVECOT                 the dovecot binary (default: dovecot, from PATH or /usr/sbin)
#   MAILSERVER_PYTHON       python with Debian's aiosmtpd (default /usr/bin/python3)
#
# Runs as root (Dovecot's own users dovecot/dovenull for its internal and login
# processes, Debian's user "mail" for mail access) or as a normal user (everything as
# that user).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=20
host=127.0.0.1

die() { echo "mailserver/start.sh: $*" >&2; exit 1; }

issuer=${MAILTOKEN_TEST_ISSUER:-}
[ -n "$issuer" ] || die "MAILTOKEN_TEST_ISSUER is not set: start the authorization server first (scripts/test does)"
issuer=${issuer%/}
case $issuer in
    http://*) ;;
    *) die "MAILTOKEN_TEST_ISSUER must be an http:// URL, got $issuer" ;;
esac

dovecot=${DOVECOT:-}
if [ -z "$dovecot" ]; then
    dovecot=$(PATH="$PATH:/usr/sbin:/sbin" command -v dovecot || true)
fi
[ -n "$dovecot" ] && [ -x "$dovecot" ] \
    || die "dovecot not found: install dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond"
python=${MAILSERVER_PYTHON:-/usr/bin/python3}
[ -x "$python" ] || python=$(command -v python3) || die "python3 not found"
"$python" -c 'import aiosmtpd' 2>/dev/null \
    || die "$python cannot import aiosmtpd: install python3-aiosmtpd (or set MAILSERVER_PYTHON)"
command -v openssl >/dev/null || die "openssl not found"

if [ -n "${MAILSERVER_DIR:-}" ]; then
    run=$MAILSERVER_DIR
    mkdir -p "$run"
else
    run=$(mktemp -d "${TMPDIR:-/tmp}/mailtoken-mail.XXXXXX")
fi
run=$(cd "$run" && pwd)
# Dovecot's processes (users dovecot/dovenull when root) must reach their sockets,
# config and the app-password file below here. Nothing in it is secret but the CA
# key, which lives in a 0700 directory.
chmod 755 "$run"
mkdir -p "$run/conf" "$run/tls" "$run/tls/private" "$run/run" "$run/state" "$run/mail" "$run/sink"
chmod 700 "$run/tls/private"
log=$run/dovecot.log
: >"$log"

pids=()
started_ok=
cleanup() {
    if [ -z "$started_ok" ]; then
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    fi
}
trap cleanup EXIT

fail() {
    echo "mailserver/start.sh: $1" >&2
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2 || true
    if [ -s "$run/dovecot.stderr" ]; then
        echo "---- dovecot's stderr ----" >&2
        tail -n 20 "$run/dovecot.stderr" >&2 || true
    fi
    exit 1
}

# --- users ---------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    internal_user=dovecot
    internal_group=dovecot
    login_user=dovenull
    getent passwd "$internal_user" >/dev/null || internal_user=root
    getent group "$internal_group" >/dev/null || internal_group=root
    getent passwd "$login_user" >/dev/null || login_user=$internal_user
else
    internal_user=$(id -un)
    internal_group=$(id -gn)
    login_user=$internal_user
fi
# Dovecot refuses to access mail as uid 0: as root, mail belongs to Debian's "mail"
# user (or nobody). DIR/mail is owned by the mail user; a test writing a message as
# another user chowns it to DIR/mail's owner (tests/integration/common/mailserver.rs does).
if [ "$(id -u)" -eq 0 ]; then
    mail_user=mail
    getent passwd "$mail_user" >/dev/null || mail_user=nobody
    mail_uid=$(id -u "$mail_user")
    mail_gid=$(id -g "$mail_user")
else
    mail_uid=$(id -u)
    mail_gid=$(id -g)
fi
chown "$mail_uid:$mail_gid" "$run/mail"

# Dovecot's own users must reach the run directory (as root: dovecot, dovenull, mail).
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    for u in "$internal_user" "$login_user" "$mail_user"; do
        uid=$(id -u "$u") gid=$(id -g "$u")
        if ! setpriv --reuid="$uid" --regid="$gid" --clear-groups test -x "$run/mail"; then
            die "user $u cannot enter $run: every parent directory must be searchable by others (chmod o+x), or leave MAILSERVER_DIR unset"
        fi
    done
fi

# --- TLS: a throw-away CA and a server certificate -------------------------------------
tls=$run/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/private/ca-key.pem" -out "$tls/ca.pem" -days 30 \
    -subj "/CN=mailtoken test CA $(date +%s)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null \
    || fail "openssl: making the CA failed"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/server-key.pem" -out "$tls/private/server.csr" \
    -subj "/CN=localhost" 2>/dev/null \
    || fail "openssl: making the server key failed"
cat >"$tls/private/server.ext" <<'EOF'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
EOF
openssl x509 -req -in "$tls/private/server.csr" -CA "$tls/ca.pem" \
    -CAkey "$tls/private/ca-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
    -days 30 -extfile "$tls/private/server.ext" -out "$tls/server.pem" 2>/dev/null \
    || fail "openssl: signing the server certificate failed"
# Read by Dovecot's config process, which runs as root when Dovecot does.
chmod 600 "$tls/server-key.pem"

# Dovecot 2.3 wants DH parameters for DHE suites; Debian ships a file.
ssl_dh_line="# no ssl_dh: /usr/share/dovecot/dh.pem is missing (ECDHE suites only)"
[ -r /usr/share/dovecot/dh.pem ] && ssl_dh_line="ssl_dh = </usr/share/dovecot/dh.pem"

# --- passdbs ---------------------------------------------------------------------------
# The introspection endpoint with the resource server's credentials in the URL
# (Dovecot sends them as HTTP basic auth).
introspection_url="http://mail-rs:mail-rs-secret@${issuer#http://}/token/introspection"
cat >"$run/conf/dovecot-oauth2.conf.ext" <<EOF
# oauth2 passdb: tokens are checked by RFC 7662 introspection at the test
# authorization server, on every login (force_introspection, no cache).
introspection_mode = post
introspection_url = $introspection_url
force_introspection = yes
username_attribute = email
active_attribute = active
active_value = true
scope = mail
openid_configuration_url = $issuer/.well-known/openid-configuration
timeout_msecs = 10000
EOF
cat >"$run/conf/users" <<'EOF'
app@example.test:{PLAIN}app-pass-word-1234
app2@example.test:{PLAIN}app-pass-word-5678
add@srv.test:{PLAIN}add-pass-word-9012
add@wk.test:{PLAIN}add-pass-word-3456
add@none.test:{PLAIN}add-pass-word-7890
EOF
chmod 644 "$run/conf/users" "$run/conf/dovecot-oauth2.conf.ext"

# --- the SMTP sink -----------------------------------------------------------------------
sink_ready=$run/sink.ready
rm -f "$sink_ready"
setsid "$python" "$here/sink.py" "$run/sink" --host "$host" --ready "$sink_ready" \
    </dev/null >>"$run/sink.log" 2>&1 &
sink_pid=$!
pids+=("$sink_pid")
sink_port=
for _ in $(seq 100); do
    if [ -s "$sink_ready" ] && line=$(grep -m1 '^READY ' "$sink_ready"); then
        sink_port=${line#READY }
        break
    fi
    kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$sink_port" ]; then
    echo "mailserver/start.sh: the SMTP sink did not start:" >&2
    tail -n 20 "$run/sink.log" >&2 || true
    exit 1
fi

# --- free ports ----------------------------------------------------------------------------
# Six distinct ports the kernel hands out as free right now (all bound at once, then
# released). Another process may take one before Dovecot binds it: then Dovecot exits
# with "Address already in use" and we try again with new ports.
free_ports() {
    "$python" - "$host" <<'EOF'
import socket, sys
socks = []
for _ in range(6):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((sys.argv[1], 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# --- the config ------------------------------------------------------------------------------
write_config() {
    cat >"$run/conf/dovecot.conf" <<EOF
# Generated by tests/mailserver/start.sh: a private Dovecot for the mailtoken tests.
instance_name = mailtoken-test-$$
base_dir = $run/run
state_dir = $run/state
log_path = $log
info_log_path = $log
debug_log_path = $log
listen = $host
protocols = imap pop3 submission
hostname = localhost
postmaster_address = postmaster@example.test

default_internal_user = $internal_user
default_internal_group = $internal_group
default_login_user = $login_user
# Mail is accessed as uid $mail_uid (the owner of $run/mail).
first_valid_uid = $mail_uid
first_valid_gid = $mail_gid

ssl = yes
ssl_cert = <$tls/server.pem
ssl_key = <$tls/server-key.pem
$ssl_dh_line
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login xoauth2 oauthbearer
# The relay's load test opens 100 submission sessions at once, beside the other tests'
# (Dovecot's default of 100 processes per service would queue the rest: "Connection
# queue full").
default_process_limit = 400
auth_verbose = yes
auth_cache_size = 0
# Fast negative tests: failures are answered at once, and no auth penalty (see
# service anvil below).
auth_failure_delay = 0

# OAuth tokens (XOAUTH2, OAUTHBEARER) go to the oauth2 passdb only, app passwords
# (PLAIN, LOGIN) to the passwd-file only: passdb { mechanisms } (Dovecot >= 2.2.28)
# skips a passdb for the other mechanisms, so a token is never tried as a password and
# an app password never as a token.
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $run/conf/dovecot-oauth2.conf.ext
}
passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u $run/conf/users
}
userdb {
  driver = static
  args = uid=$mail_uid gid=$mail_gid home=$run/mail/%u allow_all_users=yes
}
mail_location = maildir:~/Maildir

protocol imap {
  mail_max_userip_connections = 1000
}
protocol pop3 {
  mail_max_userip_connections = 1000
}
protocol submission {
  mail_max_userip_connections = 1000
}

submission_relay_host = $host
submission_relay_port = $sink_port
submission_relay_ssl = no
submission_relay_trusted = no

# No anvil auth penalty: after failures from one IP, Dovecot 2.3 delays that IP's next
# authentications by 2, 4, 8, 15 s (a test suite fails a lot from 127.0.0.1). The auth
# process tracks it through this anvil socket; with mode 0 Dovecot does not create the
# socket, and the auth process runs with the penalty disabled, silently (the documented
# switch; in 2.3 login_trusted_networks no longer exempts an IP from the penalty).
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}

# No chroot anywhere (the anvil above, these, and the login services below): chroot
# needs root, and this config also serves a Dovecot started by a normal user.
service ipc {
  chroot =
}
service old-stats {
  chroot =
}
service aggregator {
  chroot =
}
service imap-login {
  chroot =
  inet_listener imap {
    address = $host
    port = $imap_port
  }
  inet_listener imaps {
    address = $host
    port = $imaps_port
    ssl = yes
  }
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    address = $host
    port = $pop3_port
  }
  inet_listener pop3s {
    address = $host
    port = $pop3s_port
    ssl = yes
  }
}
service submission-login {
  chroot =
  inet_listener submission {
    address = $host
    port = $submission_port
  }
  inet_listener submissions {
    address = $host
    port = $submissions_port
    ssl = yes
  }
}
EOF
}

# --- readiness probe ---------------------------------------------------------------------------
# Every port must greet; the plain ports must also upgrade with STARTTLS/STLS; every TLS
# handshake is verified against the CA for the name "localhost".
probe() {
    "$python" - "$host" "$tls/ca.pem" \
        "imap:$imap_port" "imaps:$imaps_port" "pop3:$pop3_port" "pop3s:$pop3s_port" \
        "smtp:$submission_port" "smtps:$submissions_port" <<'EOF'
import socket, ssl, sys
host, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)

def lines(f):
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    return line.decode("utf-8", "replace").rstrip("\r\n")

def smtp_reply(f):
    while True:
        l = lines(f)
        if l[3:4] != "-":
            return l

def check(kind, port):
    s = socket.create_connection((host, port), timeout=3)
    try:
        if kind in ("imaps", "pop3s", "smtps"):
            s = ctx.wrap_socket(s, server_hostname="localhost")
        f = s.makefile("rb")
        greet = smtp_reply(f) if kind.startswith("smtp") else lines(f)
        ok = {"imap": "* OK", "pop3": "+OK", "smtp": "220"}[kind.rstrip("s")]
        if not greet.startswith(ok):
            raise RuntimeError("greeting %r" % greet)
        if kind == "imap":
            s.sendall(b"a STARTTLS\r\n")
            while True:
                l = lines(f)
                if l.startswith("a "):
                    break
            if not l.startswith("a OK"):
                raise RuntimeError("STARTTLS: %r" % l)
        elif kind == "pop3":
            s.sendall(b"STLS\r\n")
            l = lines(f)
            if not l.startswith("+OK"):
                raise RuntimeError("STLS: %r" % l)
        elif kind == "smtp":
            s.sendall(b"EHLO probe.localhost\r\n")
            smtp_reply(f)
            s.sendall(b"STARTTLS\r\n")
            l = smtp_reply(f)
            if not l.startswith("220"):
                raise RuntimeError("STARTTLS: %r" % l)
        if kind in ("imap", "pop3", "smtp"):
            s = ctx.wrap_socket(s, server_hostname="localhost")
        return None
    finally:
        s.close()

bad = []
for arg in sys.argv[3:]:
    kind, port = arg.split(":")
    try:
        check(kind, int(port))
    except Exception as e:
        bad.append("%s port %s: %s" % (kind, port, e))
if bad:
    print("; ".join(bad))
    sys.exit(1)
EOF
}

# --- start, with new ports when one was taken ---------------------------------------------------
deadline=$((SECONDS + timeout_s))
dovecot_pid=
last_probe=
for attempt in 1 2 3 4 5; do
    read -r imap_port imaps_port pop3_port pop3s_port submission_port submissions_port \
        < <(free_ports)
    write_config
    : >"$run/dovecot.stderr"
    : >"$log"
    # -F: stay in the foreground, so $! is the master (setsid: not tied to the
    # caller's terminal or process group).
    setsid "$dovecot" -F -c "$run/conf/dovecot.conf" </dev/null >>"$run/dovecot.stderr" 2>&1 &
    dovecot_pid=$!
    pids+=("$dovecot_pid")
    while :; do
        if ! kill -0 "$dovecot_pid" 2>/dev/null; then
            if grep -q "Address already in use" "$log" "$run/dovecot.stderr" 2>/dev/null \
                && [ "$attempt" -lt 5 ] && [ "$SECONDS" -lt "$deadline" ]; then
                echo "mailserver/start.sh: a port was taken meanwhile; trying new ports" >&2
                continue 2
            fi
            fail "dovecot exited before it was ready"
        fi
        if last_probe=$(probe 2>&1); then
            break 2
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "not ready within ${timeout_s}s: $last_probe"
        sleep 0.1
    done
done
kill -0 "$dovecot_pid" 2>/dev/null || fail "dovecot did not start"
started_ok=1

cat <<EOF
MAILSERVER_DIR=$run
MAILSERVER_PID=$dovecot_pid
MAILSERVER_LOG=$log
MAIL_HOST=$host
MAIL_IMAP_PORT=$imap_port
MAIL_IMAPS_PORT=$imaps_port
MAIL_POP3_PORT=$pop3_port
MAIL_POP3S_PORT=$pop3s_port
MAIL_SUBMISSION_PORT=$submission_port
MAIL_SUBMISSIONS_PORT=$submissions_port
MAIL_CA=$tls/ca.pem
MAIL_SINK_DIR=$run/sink
MAIL_SINK_PID=$sink_pid
EOF
