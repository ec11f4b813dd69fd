#!/usr/bin/env bash
# bench/run.sh: only the create vs bare INSERT comparison of
# bench/run-all.sh (kept for its old arguments).
#
#   bash bench/run.sh [seconds-per-run] [rounds] [clients]
#
# Writes bench/results.md and bench/results.png, like run-all.sh.
SECS=${1:-10} ROUNDS=${2:-3} CLIENTS=${3:-2} ONLY=create \
	exec bash "$(dirname "$0")/run-all.sh"
