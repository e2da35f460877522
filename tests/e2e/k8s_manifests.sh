#!/usr/bin/env bash
# The Kubernetes manifests (daemonset/) are valid and least-privilege, and the
# validator really rejects broken ones.
#
#  1. tests/k8s/validate.js (kubernetes-models, pinned by tests/k8s/package-lock.json;
#     `npm ci` on first use) accepts daemonset/ and daemonset/examples/: schemas,
#     unknown fields, RBAC without "*" or cluster-admin, the DaemonSet's
#     hostPath/propagation/NODE_NAME/tolerations/resources/probes, no literal
#     secrets, kustomization.yaml lists exactly the resource files.
#  2. Every case in tests/k8s/bad/ is rejected with exactly the errors its
#     "# expect:" lines name.
#  3. If kubectl is installed: `kubectl kustomize daemonset/` renders, the
#     rendered objects validate too, and they are the objects validate.js
#     read from the listed resources.
#  4. daemonset/Containerfile builds with scripts/install-build-deps.sh and its
#     runtime stage installs the package of every library the built binary
#     links (when the binary and dpkg are there).
#
# Needs node and npm (skips with 77 without them); no cluster, no cairn binary
# (uses $CAIRN for step 4 when ctest provides it).
# By hand: bash tests/e2e/k8s_manifests.sh
set -euo pipefail
export LC_ALL=C.UTF-8

CAIRN_SRC=${CAIRN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
K8S=$CAIRN_SRC/tests/k8s
DS=$CAIRN_SRC/daemonset

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
note() { echo "note: $*" >&2; }

command -v node >/dev/null 2>&1 ||
  skip "node is not installed: the manifest validator runs on Node.js (install nodejs and npm: scripts/install-test-deps.sh)"
command -v npm >/dev/null 2>&1 ||
  skip "npm is not installed: the manifest validator installs kubernetes-models with npm (scripts/install-test-deps.sh)"

T=$(mktemp -d /tmp/cairn-k8s.XXXXXX)
trap 'rm -rf "$T"' EXIT

# --- validator dependencies, from the lockfile ---------------------------------
# node_modules is current when every package the lockfile pins is installed at
# that version (a changed lockfile reinstalls).
modules_current() {
  (cd "$K8S" && node -e '
    const lock = require("./package-lock.json");
    for (const [p, v] of Object.entries(lock.packages || {})) {
      if (!p || v.optional || v.dev) continue;
      let got;
      try { got = require("./" + p + "/package.json").version; } catch (e) { process.exit(1); }
      if (got !== v.version) process.exit(1);
    }' 2>/dev/null)
}
if ! modules_current; then
  if command -v flock >/dev/null 2>&1; then
    exec {lockfd}>"/tmp/cairn-k8s-npm-ci.lock"
    flock -w 300 "$lockfd" || fail "timed out waiting for another 'npm ci' in $K8S"
  fi
  if ! modules_current; then
    note "installing the validator's dependencies: npm ci in $K8S"
    if ! (cd "$K8S" && npm ci --no-audit --no-fund --loglevel=error) >"$T/npm-ci.log" 2>&1; then
      tail -n 30 "$T/npm-ci.log" >&2
      fail "'npm ci' in $K8S failed (output above)"
    fi
    modules_current || fail "'npm ci' in $K8S did not install what package-lock.json pins"
  fi
fi

validate() { node "$K8S/validate.js" "$@"; }

# --- 1. the shipped manifests pass ---------------------------------------------
echo "== validate daemonset/ and daemonset/examples/"
if ! validate "$DS" "$DS/examples" 2>"$T/good.err"; then
  cat "$T/good.err" >&2
  fail "daemonset/ does not validate (errors above)"
fi
cat "$T/good.err"
# What `kubectl apply -k daemonset/` would create (kustomization resources).
validate --list "$DS" >"$T/objects" 2>/dev/null || fail "validate.js --list daemonset/ failed"
# The kustomization applies what the brief asks for.
for want in "Namespace -/cairn-system" "ServiceAccount cairn-system/cairn-agent" \
            "ClusterRole -/cairn-agent" "ClusterRoleBinding -/cairn-agent" "ClusterRole -/cairn-restore" \
            "ConfigMap cairn-system/cairn-agent-config" "DaemonSet cairn-system/cairn-agent" \
            "CronJob cairn-system/cairn-nightly" "ServiceAccount cairn-system/cairn-trigger" \
            "Role default/cairn-trigger" "RoleBinding default/cairn-trigger"; do
  grep -qxF "$want" "$T/objects" || fail "kustomization.yaml does not apply '$want' (applies: $(tr '\n' ';' <"$T/objects"))"
done
grep -q '^Secret ' "$T/objects" && fail "kustomization.yaml applies a Secret"
[ -f "$DS/secret.example.yaml" ] || fail "daemonset/secret.example.yaml is missing"
[ -f "$DS/examples/opt-in-namespace.yaml" ] || fail "daemonset/examples/opt-in-namespace.yaml is missing"

# --- 2. the broken manifests are rejected, each for its reason -----------------
echo "== validate tests/k8s/bad/ (every case must be rejected)"
cases=0
for c in "$K8S"/bad/*.yaml "$K8S"/bad/*/; do
  [ -e "$c" ] || continue
  c=${c%/}
  cases=$((cases + 1))
  name=${c#"$K8S/"}
  if [ -d "$c" ]; then srcs=("$c"/*.yaml); else srcs=("$c"); fi
  grep -h '^# expect: ' "${srcs[@]}" | sed 's/^# expect: //' >"$T/expect" || true
  [ -s "$T/expect" ] || fail "$name has no '# expect:' lines"
  rc=0
  validate "$c" >"$T/out" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || { cat "$T/out" >&2; fail "$name: validate.js exited $rc, want 1 (rejected)"; }
  while IFS= read -r msg; do
    grep -qF -- "$msg" "$T/out" || { cat "$T/out" >&2; fail "$name: expected error not reported: $msg"; }
  done <"$T/expect"
  # Error lines look like "FILE:LINE: ..."; no error beyond the expected ones.
  got=$(grep -cE '^[^ ]+:[0-9]+: ' "$T/out" || true)
  want=$(wc -l <"$T/expect")
  [ "$got" -eq "$want" ] || { cat "$T/out" >&2; fail "$name: $got errors reported, $want expected"; }
  echo "rejected as expected: $name ($want error(s))"
done
[ "$cases" -ge 8 ] || fail "only $cases cases in tests/k8s/bad (expected at least 8)"

# --- 3. kubectl kustomize renders the same objects, valid ---------------------
if command -v kubectl >/dev/null 2>&1; then
  echo "== kubectl kustomize daemonset/"
  if ! kubectl kustomize "$DS" >"$T/rendered.yaml" 2>"$T/kustomize.err"; then
    cat "$T/kustomize.err" >&2
    fail "'kubectl kustomize daemonset/' failed (output above)"
  fi
  if ! validate --list "$T/rendered.yaml" >"$T/rendered.objects" 2>"$T/rendered.err"; then
    cat "$T/rendered.err" >&2
    fail "the output of 'kubectl kustomize daemonset/' does not validate (errors above)"
  fi
  cat "$T/rendered.err"
  diff -u "$T/objects" "$T/rendered.objects" >&2 ||
    fail "kubectl kustomize renders other objects than kustomization.yaml lists (diff above)"
else
  note "kubectl is not installed: skipping the 'kubectl kustomize daemonset/' render check (validate.js checked the kustomization's resource list itself)"
fi

# --- 4. the Containerfile mirrors the build ------------------------------------
echo "== daemonset/Containerfile"
CF=$DS/Containerfile
grep -q '^RUN bash scripts/install-build-deps.sh' "$CF" ||
  fail "the Containerfile's build stage must run scripts/install-build-deps.sh (the README's build steps)"
grep -q 'cmake -B build' "$CF" || fail "the Containerfile does not build with cmake"
grep -q '^ENTRYPOINT \["cairn"\]' "$CF" || fail "the Containerfile's ENTRYPOINT must be [\"cairn\"]"
[ "$(grep -c '^FROM ' "$CF")" -eq 2 ] || fail "the Containerfile must have a build and a runtime stage"
# Packages the runtime stage installs (after the second FROM).
awk '/^FROM /{n++} n==2' "$CF" | grep -oE '^ +(lib[a-z0-9.+-]+|ca-certificates)' | tr -d ' ' | sort -u >"$T/runtime.pkgs"
[ -s "$T/runtime.pkgs" ] || fail "no runtime packages found in the Containerfile's runtime stage"
if [ -n "${CAIRN:-}" ] && [ -x "${CAIRN:-}" ] && command -v readelf >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  # Libraries loaded at run time (dlopen, engine/dl.h) are not NEEDED: their
  # sonames come from the modules that load them (uploaders/curl_dl.c, agent/pq_dl.c,
  # engine/archive_dl.c).
  dl_libs=$(cat "$CAIRN_SRC"/*/*_dl.c | grep -oE '"lib[a-z0-9]+\.so\.[0-9]+"' | tr -d '"' | sort -u)
  [ "$(echo "$dl_libs" | grep -c .)" -ge 3 ] ||
    fail "cannot find the sonames of the run-time loaded libraries in */*_dl.c (found: $dl_libs)"
  for lib in $(readelf -d "$CAIRN" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p') $dl_libs; do
    # Sanitizer runtimes belong to the sanitizer build only.
    case $lib in libasan* | libubsan* | liblsan* | libtsan*) continue ;; esac
    pkg=$(dpkg -S "*/$lib" 2>/dev/null | grep -v -- '-i386\|lib32\|libx32' | head -n 1 | cut -d: -f1) || true
    [ -n "$pkg" ] || { note "no Debian package owns $lib; not checked"; continue; }
    case $pkg in libc6 | libgcc-s1) continue ;; esac   # in every Debian image
    grep -qxF "$pkg" "$T/runtime.pkgs" ||
      fail "the binary links or loads $lib (package $pkg) but the Containerfile's runtime stage does not install $pkg"
  done
  echo "runtime stage installs every library $(basename "$CAIRN") links or loads ($(echo $dl_libs))"
else
  note "no built binary (CAIRN) or no readelf/dpkg: skipping the runtime-library check of the Containerfile"
fi

echo "k8s_manifests: OK ($cases broken cases rejected)"
