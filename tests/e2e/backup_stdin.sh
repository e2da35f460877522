#!/usr/bin/env bash
# backup --stdin: a stream from a pipe is stored as one file, restored byte
# for byte; a second identical stream dedups; bad uses are refused.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd cmp

MiB=$((1024 * 1024))
cairn_repo_init
head -c $((20 * MiB)) /dev/urandom >"$T/blob"

run_cairn backup --stdin --stdin-filename data.bin --json <"$T/blob"
expect_rc 0 "backup --stdin"
id1=$(json_get "$OUT" 'j["id"]')
[ "$(json_get "$OUT" 'j["bytes_read"]')" -eq $((20 * MiB)) ] || fail "bytes_read is not 20 MiB: $(cat "$OUT")"

# through a pipe (not a seekable file), with 1 MiB changed in the middle
{ head -c $((10 * MiB)) "$T/blob"; head -c "$MiB" /dev/urandom; tail -c +$((11 * MiB + 1)) "$T/blob"; } >"$T/blob2"
cat "$T/blob2" | cairn_ok backup --stdin --stdin-filename data.bin --json >"$T/b2.json"
new=$(json_get "$T/b2.json" 'j["bytes_new"]')
[ "$new" -lt $((4 * MiB)) ] || fail "second stream with 1 MiB changed stored $new new bytes (dedup broken)"
id2=$(json_get "$T/b2.json" 'j["id"]')

cairn_ok restore "$id1" --target "$T/r1" >/dev/null
cmp "$T/blob" "$T/r1/data.bin" || fail "restored stream 1 differs"
cairn_ok restore "$id2" --target "$T/r2" >/dev/null
cmp "$T/blob2" "$T/r2/data.bin" || fail "restored stream 2 differs"
cairn_ok snapshots --json >"$T/s.json"
expect_in ':stream:data.bin' "source of a stream snapshot" "$T/s.json"

# an empty stream is a snapshot of an empty file
cairn_ok backup --stdin </dev/null >/dev/null
cairn_ok restore latest --target "$T/r3" >/dev/null
[ -f "$T/r3/stdin" ] && [ ! -s "$T/r3/stdin" ] || fail "empty stream: no empty 'stdin' file restored"

run_cairn backup --stdin "$T/blob" </dev/null
expect_rc 2 "backup --stdin with a path"
run_cairn backup --stdin --stdin-filename a/b </dev/null
expect_error "backup --stdin-filename with a '/'"
expect_in "a/b" "bad stream name" "$ERR"
echo "ok"
