#!/bin/sh
# Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) with the
# reports committed under reports/: every snapshot, diff and trend, plus the
# small hand-made seeds in fuzz/seeds/. Run from anywhere; idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
for target in snapshot_reader diff_reader trend_reader statistics; do
    mkdir -p "$here/corpus/$target"
done
find "$root/reports/scenarios" "$root/reports/example" -name '*.json' | while read -r f; do
    # One name per source file, flat: scenario/name.json -> scenario__name.json
    name=$(echo "${f#"$root"/reports/}" | tr '/' '_')
    for target in snapshot_reader diff_reader trend_reader statistics; do
        cp "$f" "$here/corpus/$target/$name"
    done
done
for f in "$here"/seeds/*; do
    for target in snapshot_reader diff_reader trend_reader statistics; do
        cp "$f" "$here/corpus/$target/seed_$(basename "$f")"
    done
done
for target in snapshot_reader diff_reader trend_reader statistics; do
    echo "$target: $(ls "$here/corpus/$target" | wc -l) seeds"
done
