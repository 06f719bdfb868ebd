#!/bin/bash
# How the four runs were made (benchmarks/README.md, "The default run side by side"): fresh clones, one after
# another, each `make run` under /usr/bin/time -v. Runs 1-2 were one call, runs 3-4 a second one.
set -u
run() {  # run NAME REV
  git clone -q "$REPO" "$1" && git -C "$1" checkout -q "$2"
  (cd "$1" && /usr/bin/time -v -o "../$1.time" make run > "../$1.log" 2>&1)
}
REPO=${REPO:?the repository to clone}
run 1-8fb073d 8fb073d
run 2-formson formson
run 3-main main
run 4-8fb073d 8fb073d
