#!/usr/bin/env bash
# No two of Cairn's static libraries define the same global symbol. The
# linker takes the first archive that defines a name and says nothing, so a
# clash links a caller to the wrong function (it happened once: agent/'s
# cairn_copy_run and engine/'s, with different arguments; `cairn copy`
# crashed). Checked on the libraries next to the binary under test.
source "$(dirname "$0")/lib.sh"
need_cmd nm
BUILD=$(dirname "$CAIRN")
mapfile -t LIBS < <(find "$BUILD" -maxdepth 1 -name 'libcairn*.a' | sort)
[ "${#LIBS[@]}" -ge 4 ] || fail "expected Cairn's static libraries in $BUILD, found ${#LIBS[@]}"
for l in "${LIBS[@]}"; do
  nm -g --defined-only "$l" 2>/dev/null | awk -v lib="$(basename "$l")" '$2 ~ /^[TDBRVW]$/ {print $3, lib}'
done | sort >"$T/syms"
[ -s "$T/syms" ] || fail "nm listed no symbols"
awk '{print $1}' "$T/syms" | uniq -d >"$T/dups"
if [ -s "$T/dups" ]; then
  grep -wFf "$T/dups" "$T/syms" >&2
  fail "global symbols defined in more than one library (above): rename one of each pair"
fi
echo "PASS: link_symbols ($(wc -l <"$T/syms") global symbols in ${#LIBS[@]} libraries, no clash)"
