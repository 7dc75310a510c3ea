#!/usr/bin/env bash
# The quick-start demo: builds a non-compliant Thunderbird profile in a temporary home, checks it
# against the built-in BSI M 5.57 baseline, applies the baseline, checks again and restores; then
# exports the baseline's Outlook policy part as a .reg file, applies the baseline to a macOS
# home's Apple Mail preferences and exports the configuration profile for MDM. Step 10 is the
# whole loop: the policy server, an enrolled agent running as a service, a drift repaired within
# milliseconds, and the event and the compliance summary on the server.
# Nothing outside the temporary directory is touched (--home and --system-root point into it).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p postwarden-agent
agent="$PWD/target/release/postwarden-agent"

demo=$(mktemp -d "${TMPDIR:-/tmp}/postwarden-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT
home="$demo/home/alice"
root="$demo/root"
profile="$home/.thunderbird/k3x9qv2p.default-default"
mkdir -p "$profile" "$root/etc"

# A profile as a user might have left it (agent/tests/data/thunderbird/noncompliant): POP3 kept
# on the server and checked every 5 minutes, plain-text connections, a private reply-to, no SMTP
# authentication, passwords remembered and two saved.
fixture=agent/tests/data/thunderbird/noncompliant
cp "$fixture/profiles.ini" "$home/.thunderbird/profiles.ini"
cp "$fixture/prefs.js" "$fixture/logins.json" "$profile/"

args=(--profile builtin:bsi-m5.57 --var user.email=alice@example.org --home "$home" --system-root "$root")

echo "== 1. check (before) =========================================================="
"$agent" check "${args[@]}" || echo "(exit $?: not compliant)"
echo
echo "== 2. apply ===================================================================="
"$agent" apply "${args[@]}" || echo "(exit $?)"
echo
echo "== 3. check (after) ============================================================"
"$agent" check "${args[@]}" && echo "(exit 0: compliant)"
echo
echo "== 4. what apply wrote: $root/etc/thunderbird/policies/policies.json (excerpt) ="
head -n 12 "$root/etc/thunderbird/policies/policies.json"
echo "  ..."
echo
echo "== 5. restore ==================================================================="
"$agent" restore --home "$home" --system-root "$root"
echo
echo "== 6. Outlook: the baseline's policy part for Group Policy (export --format reg) ="
echo "(the file is UTF-16LE as regedit writes it; shown here converted to UTF-8)"
"$agent" export --profile builtin:bsi-m5.57 --format reg -o "$demo/bsi-m5.57.reg"
iconv -f UTF-16 -t UTF-8 "$demo/bsi-m5.57.reg" | tr -d '\r'
echo "Enforcing Outlook itself needs the Windows build: see README, \"Outlook support\"."
echo
echo "== 7. Apple Mail: preferences of a macOS home (agent/tests/data/applemail), apply ="
mac_home="$demo/Users/alice"
mkdir -p "$mac_home"
cp -R agent/tests/data/applemail/home/. "$mac_home/"
"$agent" apply --client apple-mail --profile builtin:bsi-m5.57 --var user.email=alice@example.org \
  --home "$mac_home" --system-root "$root" |
  sed -n '1,6p' || true
echo "  ... (settings-locked stays failed without MDM: see the configuration profile below)"
echo
echo "== 8. Apple Mail: the configuration profile for MDM (export --format mobileconfig), excerpt"
"$agent" export --profile builtin:bsi-m5.57 --format mobileconfig --var user.email=alice@example.org \
  --var mail.account_type=imap --var mail.incoming_host=imap.example.org \
  --var mail.outgoing_host=smtp.example.org | sed -n '1,40p'
echo "  ..."
echo
echo "== 9. Two clients, one unreadable: Thunderbird is enforced, the corrupt Apple Mail plist"
echo "==    is reported with its file and reason, nothing of Apple Mail is written (exit 1) ==="
both="$demo/both/alice"
mkdir -p "$both/.thunderbird/k3x9qv2p.default-default"
cp "$fixture/profiles.ini" "$both/.thunderbird/profiles.ini"
cp "$fixture/prefs.js" "$fixture/logins.json" "$both/.thunderbird/k3x9qv2p.default-default/"
cp -R agent/tests/data/applemail/home/. "$both/"
printf 'not a plist' >"$both/Library/Preferences/com.apple.mail-shared.plist"
mkdir -p "$demo/both-root/etc"
set +e
"$agent" apply --client thunderbird --client apple-mail --profile builtin:bsi-m5.57 \
  --var user.email=alice@example.org --home "$both" --system-root "$demo/both-root" \
  >"$demo/both.txt" 2>"$demo/both.err"
code=$?
set -e
cat "$demo/both.err"
grep -E '^(Result|Counts)' "$demo/both.txt"
echo "Thunderbird findings repaired: $(grep -c ': repaired' "$demo/both.txt")"
awk '/^Apple Mail:/ {p = 1} p' "$demo/both.txt" | sed -n '1,6p'
echo "  ..."
echo "(exit $code)"
echo
echo "== 10. The whole loop: the policy server (embedded SQLite), an enrolled agent running"
echo "==     as a service on the sample home, a drift repaired within milliseconds ========="
command -v curl >/dev/null || { echo "demo: curl is needed for step 10 (apt-get install curl)" >&2; exit 1; }
cargo build --release --quiet -p postwarden-server
server="$PWD/target/release/postwarden-server"
data="$demo/server-data"
# The first admin token comes from the server's machine; it is printed once and stored hashed.
"$server" admin create-token --name demo-admin --data-dir "$data" >"$demo/admin-token" 2>/dev/null
admin=$(cat "$demo/admin-token")
"$server" serve --data-dir "$data" --listen 127.0.0.1:0 --ready-file "$demo/ready.json" \
  2>"$demo/server.log" &
server_pid=$!
agent_pid=
trap 'kill $agent_pid "$server_pid" 2>/dev/null; wait $agent_pid "$server_pid" 2>/dev/null; rm -rf "$demo"' EXIT
for _ in $(seq 300); do [ -s "$demo/ready.json" ] && break; sleep 0.1; done
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
url=$(json 'd["url"]' <"$demo/ready.json")
pin=$(json 'd["pin_sha256"]' <"$demo/ready.json")
echo "server: $url, certificate pin $pin"
# -k skips the CA check (the certificate is self-signed); --pinnedpubkey still checks the key.
api() { curl -sS -k --pinnedpubkey "$pin" -H "Authorization: Bearer $admin" "$@"; echo; }
echo "-- upload the baseline profile, assign it to the group 'office', set alice's address"
api -X POST "$url/api/v1/profiles" -H 'content-type: application/toml' --data-binary @profiles/bsi-m5.57.toml
api -X PUT "$url/api/v1/groups/office" -H 'content-type: application/json' \
  -d '{"profile": "bsi-m5.57", "version": 1}'
api -X PUT "$url/api/v1/users/alice/variables" -H 'content-type: application/json' \
  -d '{"user.email": "alice@example.org"}'
echo "-- an enrollment token for 'office' (shown once)"
token=$(api -X POST "$url/api/v1/enrollment-tokens" -H 'content-type: application/json' \
  -d '{"group": "office", "uses": 1}' | json 'd["token"]')
echo "-- the device enrolls (the token comes from the environment, not the command line)"
state="$demo/agent-state"
POSTWARDEN_ENROLL_TOKEN="$token" "$agent" enroll --server "$url" --pin-sha256 "$pin" \
  --state-dir "$state" --user alice
echo "-- the agent runs (as the service would) on the restored, non-compliant home of step 5"
"$agent" run --state-dir "$state" --user alice --home "$home" --system-root "$root" \
  2>"$demo/agent.log" &
agent_pid=$!
for _ in $(seq 300); do
  grep -q 'user_pref("mail.server.server1.check_time", 30)' "$profile/prefs.js" 2>/dev/null &&
    [ -s "$root/etc/thunderbird/policies/policies.json" ] && break
  sleep 0.1
done
sleep 1
"$agent" status --state-dir "$state"
echo
echo "-- a script un-manages Thunderbird: check every 5 minutes, and the policy file deleted"
python3 - "$profile/prefs.js" "$root/etc/thunderbird/policies/policies.json" <<'PY'
import os, sys, time
prefs, policies = sys.argv[1], sys.argv[2]
text = open(prefs).read().replace('server1.check_time", 30)', 'server1.check_time", 5)')
start = time.monotonic()
open(prefs + ".new", "w").write(text)
os.replace(prefs + ".new", prefs)  # as Thunderbird saves: a new file renamed over the old
os.remove(policies)
while True:
    if os.path.exists(policies) and 'server1.check_time", 30)' in open(prefs).read():
        break
    time.sleep(0.0005)
print(f"repaired and re-verified {1000 * (time.monotonic() - start):.1f} ms after the change")
PY
grep -o 'user_pref("mail.server.server1.check_time", [0-9]*)' "$profile/prefs.js"
sleep 1
echo "-- the server heard about it: the drift events (CSV)"
api -H 'accept: text/csv' "$url/api/v1/events?control=mail-check-interval"
echo "-- the fleet's compliance summary (CSV)"
api -H 'accept: text/csv' "$url/api/v1/compliance/summary"
echo "-- the agent stops on SIGTERM after its current repair (exit 0)"
kill -TERM "$agent_pid"
wait "$agent_pid" && echo "(agent exit 0)"
agent_pid=
echo "-- the audit log"
api -H 'accept: text/csv' "$url/api/v1/audit-log"
echo
echo "== 11. The compliance officer's view: time to repair, the audit report, the dashboard ="
echo "-- time to repair per control and client (CSV; from the drift seen to the setting right again)"
api -H 'accept: text/csv' "$url/api/v1/compliance/time-to-repair"
echo "-- the audit report as a PDF (HTTP)"
api -o "$demo/audit.pdf" -w '%{http_code} %{content_type}, %{size_download} bytes' \
  "$url/reports/audit?format=pdf"
echo "-- the same report as HTML, offline from the database; its conclusion and first area:"
"$server" report audit --data-dir "$data" --organisation "Demo GmbH" -o "$demo/audit.html"
python3 - "$demo/audit.html" <<'PY'
import html.parser, sys
class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.depth = 0; self.lines = []; self.keep = False
    def handle_starttag(self, tag, attrs):
        if tag == "section" and dict(attrs).get("id") in ("conclusion", "areas"):
            self.keep = True
        if tag in ("h2", "h3", "p", "tr", "li") and self.keep:
            self.lines.append("")
    def handle_endtag(self, tag):
        if tag == "section":
            self.keep = False
    def handle_data(self, data):
        if self.keep and data.strip():
            self.lines[-1:] = [(self.lines[-1] + " " + " ".join(data.split())).strip()] if self.lines else [data.strip()]
t = Text(); t.feed(open(sys.argv[1]).read())
lines = [l for l in t.lines if l]
print("\n".join(lines[:14] + ["  ..."] + lines[-4:]))
PY
echo "-- the dashboard: open $url/ in a browser and log in with the admin token"
curl -sS -k --pinnedpubkey "$pin" -o /dev/null -w '%{http_code} %{redirect_url}\n' "$url/"
