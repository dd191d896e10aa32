#!/usr/bin/env bash
# Runs one libFuzzer harness for a fixed time on a working copy of its committed seed corpus
# and prints its statistics (executions, coverage). A crash, leak or timeout fails the test and
# leaves the reproducer (crash-*) in the working directory.
# Usage: run_fuzz.sh HARNESS SEED_CORPUS WORK_DIR SECONDS
set -euo pipefail
harness=$1 seeds=$2 work=$3 seconds=$4
mkdir -p "$work/corpus"
cd "$work"
exec "$harness" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$work/" corpus "$seeds"
