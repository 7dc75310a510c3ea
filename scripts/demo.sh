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
