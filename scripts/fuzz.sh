#!/usr/bin/env bash
# fuzz.sh - run every fuzz target for FUZZTIME each (default 30s; "1000000x"
# counts executions instead), one after the other, and fail on a finding.
#
# A finding is a failing input: go test writes it to
# <package>/testdata/fuzz/<target>/ and it fails again under plain go test.
# Go 1.26's fuzz coordinator can also fail a target at the very end of a
# duration -fuzztime with a bare "context deadline exceeded" and no input
# (golang/go#75804, fixed in Go 1.27), mostly on a loaded machine; that is
# reported as the known flake, not as a finding.
set -uo pipefail

FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}
TARGETS=(
  "./wire FuzzParseCommand"
  "./wire FuzzParseReply"
  "./wire FuzzServerCommands"
  "./wire FuzzHTTPKV"
  "./wire FuzzPeerServer"
  "./crdt FuzzDecode"
  "./crdt FuzzParseToken"
  "./node FuzzParseFaultState"
  "./node FuzzHandlePeer"
)

inputs() { ls "$1/testdata/fuzz/$2" 2>/dev/null | sort; }

failed=0
for t in "${TARGETS[@]}"; do
  read -r pkg target <<<"$t"
  before=$(inputs "$pkg" "$target")
  out=$(mktemp)
  echo "== $target ($pkg, $FUZZTIME)"
  "$GO" test -run=NONE -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1 | tee "$out" | grep -v "^fuzz: elapsed"
  st=${PIPESTATUS[0]}
  after=$(inputs "$pkg" "$target")
  new=$(comm -13 <(echo "$before") <(echo "$after"))
  if [ "$st" -ne 0 ]; then
    if [ -z "$new" ] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
      # Replay the corpus to be sure nothing reproducible was found.
      if "$GO" test -count=1 -run="^${target}\$" "$pkg" >/dev/null 2>&1; then
        echo "   $target: the fuzzing run ended with Go's known end-of-fuzztime flake (golang/go#75804), no failing input; corpus replay passes"
        rm -f "$out"
        continue
      fi
    fi
    echo "   $target: FAILED${new:+ (new failing input: $pkg/testdata/fuzz/$target/$new)}"
    failed=1
  fi
  rm -f "$out"
done
exit $failed
