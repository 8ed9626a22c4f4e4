#!/usr/bin/env bash
# The data-efficiency study of issue 21 as one chain: split -> one GAN per (source, real fraction), each trained on
# that fraction's real training images only -> augment (real fractions x conditions x seeds, the ratio sweep).
#
# Defaults = the CPU-scale study of issue 21 §5 (HAM10000 at 32 px, conditional DCGAN and StyleGAN2-ADA, internal
# test split and ISIC 2017 as the external test). Every step is resumable: re-running the script skips finished GAN
# runs (their latest.pt at the full length) and finished classifier runs. Override any variable from the environment,
# e.g. the tiny chain that tests/test_augment_fractions.py runs:
#   DATA=phantom:160 SIZE=16 FRACTIONS="0.5 1" SOURCES=dcgan DCGAN_STEPS=2 DCGAN_BATCH=8 GAN_WIDTH=8 SEEDS=1 \
#   EPOCHS=1 TEST= RATIOS=2 CONDITIONS=real,real+synth:1 OUT=/tmp/eff bash benchmarks/efficiency_study.sh
set -euo pipefail

DERMSYNTH=${DERMSYNTH:-dermsynth}
DATA=${DATA:-../shared/data/ham10000}
TEST=${TEST-../shared/data/isic2017_256}       # external test set ("" for none)
SIZE=${SIZE:-32}
OUT=${OUT:-runs/efficiency}
SPLIT_SEED=${SPLIT_SEED:-0}                   # fixes the split and the nested real fractions
FRACTIONS=${FRACTIONS:-"0.05 0.1 0.25 0.5 1"}
SOURCES=${SOURCES:-"dcgan sg2ada"}            # named synthetic sources, one GAN per fraction each
RATIOS=${RATIOS:-"0.5,1,2,5,10"}              # synthetic:real sweep at the smallest fraction
CONDITIONS=${CONDITIONS:-"real,real+classic,real+synth:1,real+balance"}
SEEDS=${SEEDS:-10}                            # 10: the exact paired tests can reach p < 0.05 (2/2^K)
EPOCHS=${EPOCHS:-50}
WORKERS=${WORKERS:-2}                         # classifier runs at once (threads per run = CPUs / WORKERS)
GAN_WIDTH=${GAN_WIDTH:-32}
DCGAN_STEPS=${DCGAN_STEPS:-3000}              # the issue-13 study's conditional DCGAN
DCGAN_BATCH=${DCGAN_BATCH:-64}
SG2_STEPS=${SG2_STEPS:-1500}                  # the StyleGAN2-ADA study's length at 32 px (batch 16)

mkdir -p "$OUT"
[ -f "$OUT/split.json" ] || $DERMSYNTH split "$DATA" --size "$SIZE" --seed "$SPLIT_SEED" --out "$OUT/split.json"

train_gan() {  # source fraction: one GAN on the fraction's training images (train --split --real-fraction)
  local source=$1 fraction=$2 run="$OUT/gan-$1-$2" resume=()
  [ -f "$run/latest.pt" ] && resume=(--resume)
  case $source in
    dcgan)  $DERMSYNTH train "${resume[@]}" --model dcgan --conditional --data "$DATA" --size "$SIZE" \
              --split "$OUT/split.json" --real-fraction "$fraction" --width "$GAN_WIDTH" --steps "$DCGAN_STEPS" \
              --batch-size "$DCGAN_BATCH" \
              --seed 0 --out "$run" --quiet ;;
    sg2ada) $DERMSYNTH train "${resume[@]}" --model stylegan2 --conditional --augment ada --ada-kimg 10 \
              --data "$DATA" --size "$SIZE" --split "$OUT/split.json" --real-fraction "$fraction" --width 4 \
              --batch-size 16 --steps "$SG2_STEPS" --seed 0 --out "$run" --quiet ;;
    *) echo "unknown source $source (dcgan, sg2ada)" >&2; exit 2 ;;
  esac
}

synthetic=()
for source in $SOURCES; do
  for fraction in $FRACTIONS; do
    train_gan "$source" "$fraction"
  done
  synthetic+=(--synthetic "$source=$OUT/gan-$source-{fraction}")  # augment fills in each fraction
done

test_option=()
[ -n "$TEST" ] && test_option=(--test "$TEST")
$DERMSYNTH augment --data "$DATA" --size "$SIZE" --split "$OUT/split.json" --out "$OUT/augment" \
  --conditions "$CONDITIONS" "${synthetic[@]}" --real-fraction "${FRACTIONS// /,}" --synthetic-ratio "$RATIOS" \
  --seeds "$SEEDS" --epochs "$EPOCHS" --workers "$WORKERS" "${test_option[@]}" --quiet
