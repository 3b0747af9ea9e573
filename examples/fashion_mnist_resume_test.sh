#!/bin/sh
# Kill-and-resume test of fashion_mnist's training checkpoints (Note [fashion_mnist checkpoints]): a run killed
# with SIGKILL after an epoch, and one killed in the middle of writing a checkpoint, each resumed from the
# checkpoint folder, must end with exactly the weights (byte-identical --save files), losses and accuracies
# (--metrics-json without its timings) of the uninterrupted run.
# Usage: fashion_mnist_resume_test.sh <fashion_mnist binary> <data folder> <scratch folder>
set -eu
bin=$1
data=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() {
  echo "FAIL: $*"
  exit 1
}

# Everything but the timings, which differ from run to run.
metrics() { grep -v -e '_seconds' -e '_per_sec' "$1"; }

# $1: name, then fashion_mnist's arguments. An uninterrupted run, a run killed by SIGKILL (through a test hook,
# $kill_var=$kill_epoch), the resumed run, and the comparisons.
scenario() {
  name=$1
  shift
  "$bin" "$@" --data "$data" --save "$name-full.safetensors" --metrics-json "$name-full.json" >"$name-full.log" 2>&1 ||
    fail "$name: the uninterrupted run failed: $(tail -3 "$name-full.log")"

  status=0
  env "$kill_var=$kill_epoch" "$bin" "$@" --data "$data" --checkpoint-dir "$name-ck" >"$name-killed.log" 2>&1 ||
    status=$?
  [ "$status" -eq 137 ] || fail "$name: the run with $kill_var=$kill_epoch exited with $status, not 137 (SIGKILL)"
  echo "$name: killed by SIGKILL ($kill_var=$kill_epoch); left in $name-ck: $(ls "$name-ck" | tr '\n' ' ')"
  ls "$name-ck" | grep -q -x "checkpoint-0000000$expect_newest.safetensors" ||
    fail "$name: checkpoint $expect_newest is missing"
  if ls "$name-ck" | grep -q -x "checkpoint-0000000$((expect_newest + 1)).safetensors"; then
    fail "$name: a checkpoint after epoch $expect_newest is visible under its final name"
  fi

  "$bin" "$@" --data "$data" --checkpoint-dir "$name-ck" --resume "$name-ck" --save "$name-resumed.safetensors" \
    --metrics-json "$name-resumed.json" >"$name-resumed.log" 2>&1 ||
    fail "$name: the resumed run failed: $(tail -3 "$name-resumed.log")"
  grep "resumed from" "$name-resumed.log"
  grep -q "resumed from $name-ck/checkpoint-0000000$expect_newest.safetensors" "$name-resumed.log" ||
    fail "$name: did not resume from checkpoint $expect_newest"
  if ls "$name-ck" | grep -q '\.tmp\.'; then fail "$name: the temporary file of the killed save is still there"; fi

  cmp "$name-full.safetensors" "$name-resumed.safetensors" ||
    fail "$name: the resumed run's weights differ from the uninterrupted run's"
  metrics "$name-full.json" >"$name-full.metrics"
  metrics "$name-resumed.json" >"$name-resumed.metrics"
  diff "$name-full.metrics" "$name-resumed.metrics" ||
    fail "$name: the resumed run's losses or accuracies differ from the uninterrupted run's"
  echo "$name: uninterrupted and resumed runs end with byte-identical weights" \
    "($(wc -c <"$name-full.safetensors") bytes, cksum $(cksum <"$name-full.safetensors" | cut -d' ' -f1) and" \
    "$(cksum <"$name-resumed.safetensors" | cut -d' ' -f1)) and equal metrics:"
  grep -e '"test_accuracy"' -e '"test_loss"' -e '"final_train_loss"' "$name-resumed.json"
}

# AdamW: killed right after epoch 1's checkpoint; resumes from it.
kill_var=EMBER_TEST_KILL_AFTER_EPOCH kill_epoch=1 expect_newest=1 \
  scenario adamw --model mlp --epochs 3 --batch-size 32 --limit 1000

# SGD with Nesterov momentum: killed while epoch 2's checkpoint is half-written; epoch 1's must be intact.
kill_var=EMBER_TEST_KILL_DURING_SAVE kill_epoch=2 expect_newest=1 \
  scenario sgd --model mlp --optimizer sgd --epochs 3 --batch-size 32 --limit 1000

echo "PASS"
