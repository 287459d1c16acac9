#!/usr/bin/env bash
# tlsnicd --help exits 0, and every option its usage lists is described below the usage
# (an option line, or a sentence naming it); an unknown option exits 2.
# Usage: tlsnicd_help.sh PATH_TO_TLSNICD
set -uo pipefail
tlsnicd=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

help=$("$tlsnicd" --help) || fail "tlsnicd --help exited $?"
usage=$(printf '%s\n' "$help" | sed -n '1,/^ *tlsnicd --help$/p')
described=$(printf '%s\n' "$help" | sed '1,/^ *tlsnicd --help$/d')
[ -n "$described" ] || fail "no description after the usage"
opts=$(printf '%s\n' "$usage" | grep -o -- '--[a-z][a-z-]*' | sort -u)
[ "$(printf '%s\n' "$opts" | wc -l)" -ge 10 ] || fail "usage lists too few options: $opts"
for opt in $opts; do
  [ "$opt" = --help ] && continue
  grep -q -w -e "$opt" <<<"$described" || fail "$opt is in the usage but not described"
done

"$tlsnicd" --no-such-option >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "an unknown option exited $rc, not 2"
echo "PASS: tlsnicd --help describes $(printf '%s\n' "$opts" | grep -vc -- --help) options; an unknown option exits 2"
