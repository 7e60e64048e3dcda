#!/usr/bin/env bash
# The test domains of `mailtoken add` (tests/integration/add.rs), for real: a dnsmasq on
# a loopback port answering MX, SRV and A records, and an HTTPS server (Python's
# http.server with a certificate from the test mail server's CA) on 127.77.0.1:443
# serving Thunderbird autoconfig files. Run by scripts/test after the authorization
# server and Dovecot, whose addresses the records and files point at. Needs root (port
# 443) and: ISSUER, MAILSERVER_DIR, MAIL_IMAPS_PORT, MAIL_SUBMISSIONS_PORT,
# MAIL_SUBMISSION_PORT, MAIL_POP3S_PORT.
#
# The domains (all under .test, RFC 2606; dnsmasq answers NXDOMAIN for anything else
# there, and for autoconfig.thunderbird.net's other paths):
#   gws.test    MX aspmx.l.google.com                       Google Workspace
#   m365.test   MX m365-test.mail.protection.outlook.com    Microsoft 365
#   srv.test    SRV _imaps, _submissions, _pop3s -> localhost:Dovecot   (RFC 6186 only)
#   auto.test   autoconfig.auto.test/mail/config-v1.1.xml: Dovecot, OAuth2 at ISSUER
#   wk.test     wk.test/.well-known/autoconfig/...: Dovecot with passwords
#   ispdb.test  only in the "ISPDB" (autoconfig.thunderbird.net/v1.1/ispdb.test)
#   none.test   nothing at all
# Prints `export` lines: MAILTOKEN_TEST_DNS (HOST:PORT), DISCOVERY_PIDS.
set -euo pipefail
: "${ISSUER:?}" "${MAILSERVER_DIR:?}" "${MAIL_IMAPS_PORT:?}" "${MAIL_SUBMISSIONS_PORT:?}" \
  "${MAIL_SUBMISSION_PORT:?}" "${MAIL_POP3S_PORT:?}"
dir=$(mktemp -d "${TMPDIR:-/tmp}/mailtoken-discovery.XXXXXX")
web_ip=127.77.0.1
tls=$MAILSERVER_DIR/tls

# --- the web server's certificate, from the test CA ------------------------------------
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$dir/key.pem" -out "$dir/csr.pem" -subj "/CN=autoconfig.auto.test" 2>/dev/null
cat >"$dir/ext" <<'EOF'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:autoconfig.auto.test,DNS:wk.test,DNS:autoconfig.thunderbird.net
EOF
openssl x509 -req -in "$dir/csr.pem" -CA "$tls/ca.pem" -CAkey "$tls/private/ca-key.pem" \
  -set_serial "0x$(openssl rand -hex 8)" -days 30 -extfile "$dir/ext" -out "$dir/cert.pem" 2>/dev/null

# --- the files, one directory per host ---------------------------------------------------
server() { # TYPE ELEMENT HOST PORT SOCKET AUTH...
  local element=$1 type=$2 host=$3 port=$4 socket=$5; shift 5
  printf '    <%s type="%s">\n      <hostname>%s</hostname>\n      <port>%s</port>\n      <socketType>%s</socketType>\n      <username>%%EMAILADDRESS%%</username>\n' \
    "$element" "$type" "$host" "$port" "$socket"
  for a in "$@"; do printf '      <authentication>%s</authentication>\n' "$a"; done
  printf '    </%s>\n' "$element"
}
mkdir -p "$dir/www/autoconfig.auto.test/mail" "$dir/www/wk.test/.well-known/autoconfig/mail" \
  "$dir/www/autoconfig.thunderbird.net/v1.1"
{
  echo '<?xml version="1.0" encoding="UTF-8"?>'
  echo '<!-- mailtoken test domain auto.test: the test Dovecot, OAuth2 at the test authorization server -->'
  echo '<clientConfig version="1.1">'
  echo '  <emailProvider id="auto.test">'
  echo '    <domain>auto.test</domain>'
  echo '    <displayName>Auto &amp; Test Mail</displayName>'
  server incomingServer imap localhost "$MAIL_IMAPS_PORT" SSL OAuth2
  server incomingServer pop3 localhost "$MAIL_POP3S_PORT" SSL OAuth2
  server outgoingServer smtp localhost "$MAIL_SUBMISSIONS_PORT" SSL OAuth2
  echo '  </emailProvider>'
  echo '  <oAuth2>'
  echo "    <issuer>$ISSUER</issuer>"
  echo '    <scope>openid email mail</scope>'
  echo '  </oAuth2>'
  echo '</clientConfig>'
} >"$dir/www/autoconfig.auto.test/mail/config-v1.1.xml"
password_file() {
  echo '<?xml version="1.0" encoding="UTF-8"?>'
  echo '<clientConfig version="1.1">'
  echo "  <emailProvider id=\"$1\">"
  server incomingServer imap localhost "$MAIL_IMAPS_PORT" SSL password-cleartext
  server outgoingServer smtp localhost "$MAIL_SUBMISSION_PORT" STARTTLS password-cleartext
  echo '  </emailProvider>'
  echo '</clientConfig>'
}
password_file wk.test >"$dir/www/wk.test/.well-known/autoconfig/mail/config-v1.1.xml"
password_file ispdb.test >"$dir/www/autoconfig.thunderbird.net/v1.1/ispdb.test"

# --- HTTPS: the file at www/HOST/PATH, by the Host header -------------------------------
/usr/bin/python3 - "$dir" "$web_ip" >"$dir/web.log" 2>&1 <<'PY' &
import http.server, os, ssl, sys
root, ip = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        path = os.path.normpath(self.path.split("?")[0]).lstrip("/")
        f = os.path.join(root, "www", host, path)
        if ".." in path or not os.path.isfile(f):
            self.send_error(404)
            return
        body = open(f, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(root, "cert.pem"), os.path.join(root, "key.pem"))
srv = http.server.ThreadingHTTPServer((ip, 443), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("serving", flush=True)
srv.serve_forever()
PY
web_pid=$!

# --- DNS -------------------------------------------------------------------------------
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dnsmasq --keep-in-foreground --port="$port" --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --no-poll --pid-file="$dir/dnsmasq.pid" --log-facility="$dir/dns.log" --log-queries \
  --local=/test/ --local=/thunderbird.net/ \
  --mx-host=gws.test,aspmx.l.google.com,1 \
  --mx-host=m365.test,m365-test.mail.protection.outlook.com,0 \
  --srv-host=_imaps._tcp.srv.test,localhost,"$MAIL_IMAPS_PORT",0,1 \
  --srv-host=_submissions._tcp.srv.test,localhost,"$MAIL_SUBMISSIONS_PORT",0,1 \
  --srv-host=_pop3s._tcp.srv.test,localhost,"$MAIL_POP3S_PORT",0,1 \
  --srv-host=_imap._tcp.none.test \
  --host-record=autoconfig.auto.test,$web_ip --host-record=wk.test,$web_ip \
  --host-record=autoconfig.thunderbird.net,$web_ip >"$dir/dnsmasq.out" 2>&1 &
dns_pid=$!
for _ in $(seq 100); do
  grep -q serving "$dir/web.log" 2>/dev/null && [ -s "$dir/dnsmasq.pid" ] && break
  sleep 0.05
done
if ! kill -0 "$web_pid" 2>/dev/null || ! kill -0 "$dns_pid" 2>/dev/null; then
  echo "tests/discovery/start.sh: the web server or dnsmasq did not start:" >&2
  cat "$dir/web.log" "$dir/dnsmasq.out" >&2
  exit 1
fi
echo "export MAILTOKEN_TEST_DNS=127.0.0.1:$port DISCOVERY_DIR=$dir DISCOVERY_PIDS=\"$web_pid $dns_pid\""
