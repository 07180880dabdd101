#!/usr/bin/env bash
# Runs every fuzz target in the module (func FuzzXxx in a *_test.go) for
# FUZZTIME each (default 30s), one after the other. A crasher is written to
# the package's testdata/fuzz/FuzzXxx/ and the run stops: fix the cause and
# commit the file, it is then a regression test of plain `go test`.
# FUZZ=regexp picks targets by name.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
targets=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		[[ $name =~ $FUZZ ]] || continue
		echo "== $pkg $name ($FUZZTIME)"
		$GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
		targets=$((targets + 1))
	done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort)
echo "fuzz: $targets targets, $FUZZTIME each: no failure"
