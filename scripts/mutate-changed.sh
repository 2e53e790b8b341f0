#!/usr/bin/env bash
# Mutation testing (StrykerJS) of the lines a change touches in ts/dni, ts/optim, ts/train and
# ts/cli: the lines added or changed since BASE are mutated (stryker's file:line-range form), and
# each mutant runs against the fast tests of its folder (folderTests in stryker.config.mjs).
# A whole folder takes 15-60 minutes on 2 cores; a change's lines take seconds to minutes.
#
#   bash scripts/mutate-changed.sh [BASE]
#     BASE             default: the merge-base with main, or HEAD~1 when HEAD is on main
#     MUTATE_TIME_CAP  seconds (default 170): a run that would take longer is stopped and the
#                      script says so and exits 0 (run `npm run mutate` on demand instead)
#     MUTATE_BREAK     fail (exit 1) when the changed lines' mutation score is below this
#                      percentage; default: report only
# Needs the built addon (build/Release/synthgrad.node) and dist/, like the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

base="${1:-}"
if [ -z "$base" ]; then
  if [ "$(git rev-parse HEAD)" != "$(git rev-parse main 2>/dev/null || true)" ] && git rev-parse -q --verify main >/dev/null; then
    base="$(git merge-base HEAD main)"
  else
    base="HEAD~1"
  fi
fi
cap="${MUTATE_TIME_CAP:-170}"

# file:first-last for every hunk that adds lines (pure deletions leave nothing to mutate).
ranges=()
folders=()
while IFS= read -r file; do
  [ -f "$file" ] || continue
  while IFS= read -r range; do ranges+=("$file:$range"); done < <(
    git diff -U0 "$base" -- "$file" | sed -nE 's/^@@ -[0-9,]+ \+([0-9]+)(,([0-9]+))? @@.*/\1 \3/p' |
      awk '{ n = ($2 == "") ? 1 : $2; if (n > 0) print $1 "-" ($1 + n - 1) }')
  folders+=("$(echo "$file" | cut -d/ -f2)")
done < <(git diff --name-only --diff-filter=AMR "$base" -- 'ts/dni/*.ts' 'ts/optim/*.ts' 'ts/train/*.ts' 'ts/cli/*.ts')

if [ "${#ranges[@]}" -eq 0 ]; then
  echo "mutate-changed: no changed lines in ts/{dni,optim,train,cli} since $(git rev-parse --short "$base"); nothing to mutate"
  exit 0
fi

# The union of the touched folders' test files.
tests="$(node --input-type=module -e "
  const { folderTests } = await import('./stryker.config.mjs');
  const names = new Set(process.argv.slice(1).flatMap((f) => folderTests[f] ?? []));
  console.log([...names].join(','));" "${folders[@]}")"
mutate="$(IFS=,; echo "${ranges[*]}")"
echo "mutate-changed: since $(git rev-parse --short "$base"): $mutate"
echo "mutate-changed: tests: $tests (cap ${cap} s)"

start=$SECONDS
set +e
STRYKER_TESTS="$tests" STRYKER_REPORT=changed STRYKER_BREAK="${MUTATE_BREAK:-}" \
  timeout --signal=INT --kill-after=20 "$cap" node_modules/.bin/stryker run --mutate "$mutate" --reporters clear-text,json
rc=$?
set -e
echo "mutate-changed: $((SECONDS - start)) s"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "mutate-changed: stopped at the ${cap} s cap (a large change); run it on demand: bash scripts/mutate-changed.sh $base with MUTATE_TIME_CAP=0"
  exit 0
fi
exit "$rc"
