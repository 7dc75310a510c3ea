#!/usr/bin/env bash
# The quick-start demo: builds a non-compliant Thunderbird profile in a temporary home, checks it
# against the built-in BSI M 5.57 baseline, applies the baseline, checks again and restores; then
# exports the baseline's Outlook policy part as a .reg file, applies the baseline to a macOS
# home's Apple Mail preferences and exports the configuration profile for MDM.
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
echo "== 10. The policy server on its embedded SQLite: the administrator's workflow ======"
echo "==     (curl stands in for the agent service until it lands) ======================="
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
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; rm -rf "$demo"' EXIT
for _ in $(seq 300); do [ -s "$demo/ready.json" ] && break; sleep 0.1; done
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
url=$(json 'd["url"]' <"$demo/ready.json")
pin=$(json 'd["pin_sha256"]' <"$demo/ready.json")
echo "server: $url, certificate pin $pin"
# -k skips the CA check (the certificate is self-signed); --pinnedpubkey still checks the key.
api() { curl -sS -k --pinnedpubkey "$pin" -H "Authorization: Bearer $admin" "$@"; echo; }
echo "-- upload the baseline profile"
api -X POST "$url/api/v1/profiles" -H 'content-type: application/toml' --data-binary @profiles/bsi-m5.57.toml
echo "-- assign it to the group 'office'"
api -X PUT "$url/api/v1/groups/office" -H 'content-type: application/json' \
  -d '{"profile": "bsi-m5.57", "version": 1}'
echo "-- set alice's official address"
api -X PUT "$url/api/v1/users/alice/variables" -H 'content-type: application/json' \
  -d '{"user.email": "alice@example.org"}'
echo "-- an enrollment token for 'office' (shown once)"
token=$(api -X POST "$url/api/v1/enrollment-tokens" -H 'content-type: application/json' \
  -d '{"group": "office", "uses": 1}' | tee /dev/stderr | json 'd["token"]') 2>&1
echo "-- a device enrolls with it"
enrolled=$(curl -sS -k --pinnedpubkey "$pin" -X POST "$url/api/v1/enroll" -H 'content-type: application/json' \
  -d "{\"token\": \"$token\", \"hostname\": \"ws-alice\", \"os\": \"linux\", \"agent_version\": \"0.1.0\", \"users\": [\"alice\"]}")
device=$(json 'd["device_id"]' <<<"$enrolled")
credential=$(json 'd["credential"]' <<<"$enrolled")
echo "device $device enrolled"
echo "-- it fetches its signed bundle (a JWS); the payload:"
curl -sS -k --pinnedpubkey "$pin" -D "$demo/headers" -H "Authorization: Bearer $credential" \
  "$url/api/v1/bundle" >"$demo/bundle.jws"
grep -i '^etag' "$demo/headers"
python3 - "$demo/bundle.jws" <<'PY'
import base64, json, sys
header, payload, _ = open(sys.argv[1]).read().split(".")
dec = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
print("header:", json.dumps(dec(header)))
p = dec(payload)
p["profile"]["toml"] = p["profile"]["toml"][:40] + "..."
print("payload:", json.dumps(p, indent=1))
PY
echo "-- it reports: the restored (non-compliant) profile of step 5, checked now"
"$agent" check "${args[@]}" --format json >"$demo/report.json" || true
python3 - "$demo/report.json" >"$demo/batch.json" <<'PY'
import datetime, json, sys, uuid
report = json.load(open(sys.argv[1]))
print(json.dumps({"schema": "postwarden.report-batch/v1", "items": [{
    "id": str(uuid.uuid4()),
    "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "kind": "report", "report": report, "user": "alice"}]}))
PY
curl -sS -k --pinnedpubkey "$pin" -X POST "$url/api/v1/reports" -H "Authorization: Bearer $credential" \
  -H 'content-type: application/json' --data-binary @"$demo/batch.json"
echo
echo "-- the same batch again (a retry) is not counted twice"
curl -sS -k --pinnedpubkey "$pin" -X POST "$url/api/v1/reports" -H "Authorization: Bearer $credential" \
  -H 'content-type: application/json' --data-binary @"$demo/batch.json"
echo
echo "-- the compliance summary (CSV)"
api -H 'accept: text/csv' "$url/api/v1/compliance/summary"
echo "-- who fails 'require-tls', with the evidence"
api "$url/api/v1/compliance/controls/require-tls" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for dev in d["devices"]:
    print(dev["id"], dev["hostname"], dev["status"])
    for f in dev["findings"][:3]:
        print("  ", f["user"], f["setting"], "expected", json.dumps(f["expected"]), "actual", json.dumps(f["actual"]))'
echo "-- the audit log"
api -H 'accept: text/csv' "$url/api/v1/audit-log"
