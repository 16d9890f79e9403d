#!/usr/bin/env bash
# Runs every fuzz test (func FuzzXxx in a *_test.go file) of the module for a while each.
#
#   packaging/fuzz-all.sh [DURATION] [PACKAGE-DIR...]
#
# DURATION is a go test -fuzztime value (default 20s); PACKAGE-DIRs limit the run to
# those directories (default: the whole module). `go test -fuzz` takes one target per
# run, so targets run one after another. New crashers land in the package's
# testdata/fuzz/FuzzXxx/ as Go writes them; commit them as regression seeds.
# Exits non-zero if any target fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime=${1:-20s}
[ $# -eq 0 ] || shift
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(.)

failed=()
count=0
while IFS=: read -r file name; do
	dir=$(dirname "$file")
	count=$((count + 1))
	echo "== $dir $name ($fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir"; then
		failed+=("$dir $name")
	fi
done < <(grep -rHoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' "${dirs[@]}" |
	sed -E 's#^\./##; s#:func #:#' | LC_ALL=C sort -u)

echo "fuzz-all: $count targets, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
