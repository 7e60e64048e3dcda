# Section 6 of scripts/bench (sourced by it): the SMTP relay against the test Dovecot
# and authorization server that scripts/test uses. An app-only account (no login
# needed) with a relay; msmtp direct (STARTTLS, XOAUTH2 with `mailtoken token`) against
# msmtp through the relay (PLAIN to it), paired; then 100 concurrent smtplib sessions.
relay() {
  if [ ! -x /usr/sbin/dovecot ] || ! command -v msmtp >/dev/null; then
    echo "  Dovecot and msmtp are needed: run scripts/test once, which installs them" >&2
    return 1
  fi
  local r=$work/relay
  mkdir -p "$r"
  export AUTHSERVER_LOG=$r/authserver.log
  eval "$(bash "$root/tests/authserver/start.sh")" || return 1
  track "$PID"
  export MAILTOKEN_TEST_ISSUER=$ISSUER
  local mail_env
  unset MAILSERVER_DIR
  mail_env=$(bash "$root/tests/mailserver/start.sh") || return 1
  eval "$mail_env"
  track "$MAILSERVER_PID"
  track "$MAIL_SINK_PID"
  # An app-only client of the test server: its tokens are for one mailbox.
  local mailbox=bench-relay@example.test app id secret port
  app=$(curl -s -X POST -H 'content-type: application/json' \
    -d "{\"grant_types\":[\"client_credentials\"],\"response_types\":[],\"redirect_uris\":[],\"token_endpoint_auth_method\":\"client_secret_post\",\"scope\":\"mail\",\"mailbox\":\"$mailbox\"}" \
    "$ISSUER/reg")
  id=$(printf %s "$app" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
  secret=$(printf %s "$app" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
  printf '%s\n' "$secret" >"$r/secret"
  chmod 600 "$r/secret"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$r/config/mailtoken" "$r/state" "$r/run"
  chmod 700 "$r/run"
  {
    echo '[store]'
    echo 'kind = "file"'
    echo '[accounts.b]'
    echo 'auth = "client_credentials"'
    echo "user = \"$mailbox\""
    echo "token_url = \"$ISSUER/token\""
    echo "client_id = \"$id\""
    echo "client_secret_cmd = \"cat $r/secret\""
    echo 'scopes = ["mail"]'
    echo "ca_file = \"$MAIL_CA\""
    echo "smtp = { host = \"127.0.0.1\", port = $MAIL_SUBMISSION_PORT, tls = \"starttls\" }"
    echo '[accounts.b.relay]'
    echo "smtp = \"127.0.0.1:$port\""
  } >"$r/config/mailtoken/config.toml"
  export MAILTOKEN_CONFIG=$r/config/mailtoken/config.toml XDG_CONFIG_HOME=$r/config \
    XDG_STATE_HOME=$r/state XDG_RUNTIME_DIR=$r/run DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent
  "$BENCH_BIN" serve 2>"$r/daemon.log" &
  track "$!"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  local pw
  pw=$("$BENCH_BIN" relay-password b) || return 1
  {
    echo 'account b'
    echo 'host 127.0.0.1'
    echo "port $MAIL_SUBMISSION_PORT"
    echo 'tls on'
    echo 'tls_starttls on'
    echo "tls_trust_file $MAIL_CA"
    echo 'auth xoauth2'
    echo "user $mailbox"
    echo "from $mailbox"
    echo "passwordeval \"$BENCH_BIN token b --for smtp\""
  } >"$r/direct.rc"
  {
    echo 'account b'
    echo 'host 127.0.0.1'
    echo "port $port"
    echo 'tls off'
    echo 'auth plain'
    echo "user $mailbox"
    echo "password $pw"
    echo "from $mailbox"
  } >"$r/relay.rc"
  chmod 600 "$r/direct.rc" "$r/relay.rc"
  local out pairs=${BENCH_RELAY_PAIRS:-50}
  out=$(python3 "$root/benches/relay_bench.py" "$r/direct.rc" "$r/relay.rc" "$mailbox" "$port" "$pw" \
    "$MAIL_SINK_DIR" "$pairs") || return 1
  local added ratio direct rel
  added=$(awk '/^added/ { printf "%s ms (p10 %s, p90 %s)", $2, $3, $4 }' <<<"$out")
  ratio=$(awk '/^ratio/ { print $2 }' <<<"$out")
  direct=$(awk '/^direct/ { print $2 }' <<<"$out")
  rel=$(awk '/^relay/ { print $2 }' <<<"$out")
  figure "relay: time a relayed msmtp session adds to a direct one, median of $pairs pairs" \
    "$added; $rel ms vs $direct ms direct (ratio $ratio)" - info
  local rate wall once twice
  read -r _ rate wall once twice <<<"$(grep '^load' <<<"$out")"
  local verdict=pass
  { [ "$once" = 100 ] && [ "$twice" = 0 ]; } || verdict=MISS
  figure "relay: 100 concurrent SMTP sessions (smtplib, PLAIN to the relay, XOAUTH2 upstream)" \
    "$rate messages/s ($wall s for all), $once delivered once, $twice more than once" \
    "each delivered once" "$verdict"
  rm -rf "$MAILSERVER_DIR"
}
