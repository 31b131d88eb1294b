#!/usr/bin/env bash
# Differential test of rbuild against classic docker on the project's own cases
# (testdata/compat), through the shared difftest harness.
#
#   scripts/difftest.sh                        # docker vs rbuild, every case
#   scripts/difftest.sh -c 'copy_*' -j 1       # some cases, verdicts as they finish
#   scripts/difftest.sh docker buildah         # the reference builders only (no cargo build)
#
# Arguments go to the harness's run_all.sh unchanged; without builders it compares
# `docker rbuild`. When rbuild is among the builders, the release binary is built first
# (`cargo build --release --locked`) unless RBUILD names another binary.
#
# Environment:
#   RBUILD_DIFFTEST  the harness directory (default: ../shared/difftest beside the
#                    repository, or beside the main checkout when this is a git worktree)
#   RBUILD           the rbuild binary (default: target/release/rbuild of this repository)
#   DIFFTEST_CASES   the cases (default: testdata/compat of this repository)
#   everything else run_all.sh reads (DIFFTEST_WORK, DIFFTEST_VERBOSE, ...) passes through
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

find_harness() {
    if [[ -n "${RBUILD_DIFFTEST:-}" ]]; then
        echo "$RBUILD_DIFFTEST"
        return
    fi
    local candidates=("$root/../shared/difftest")
    # in a git worktree, the shared folder sits beside the main checkout
    local common
    if common=$(git -C "$root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
        candidates+=("$(dirname "$common")/../shared/difftest")
    fi
    local c
    for c in "${candidates[@]}"; do
        if [[ -x "$c/run_all.sh" ]]; then
            (cd "$c" && pwd)
            return
        fi
    done
    echo "difftest.sh: harness not found (looked in: ${candidates[*]}); set RBUILD_DIFFTEST" >&2
    return 1
}

harness=$(find_harness)

# which builders run_all.sh will get: the words after its options
builders=()
args=("$@")
i=0
while ((i < ${#args[@]})); do
    case "${args[i]}" in
        -c | -j) i=$((i + 2)) ;;
        -*) i=$((i + 1)) ;;
        *)
            builders+=("${args[i]}")
            i=$((i + 1))
            ;;
    esac
done
if ((${#builders[@]} == 0)); then
    builders=(docker rbuild)
    args+=("${builders[@]}")
fi

for b in "${builders[@]}"; do
    if [[ "$b" == rbuild ]]; then
        if [[ -z "${RBUILD:-}" ]]; then
            (cd "$root" && cargo build --release --locked)
            export RBUILD="$root/target/release/rbuild"
        fi
        break
    fi
done

export DIFFTEST_CASES=${DIFFTEST_CASES:-$root/testdata/compat}
exec "$harness/run_all.sh" "${args[@]}"
