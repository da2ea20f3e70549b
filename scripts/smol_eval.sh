#!/usr/bin/env bash
# The smol table of the README: a trained run scored on the test split, one task at a time.
#   bash scripts/smol_eval.sh runs/smol [CTC_WEIGHT]   # then: python scripts/smol_table.py runs/smol [runs/smol_dense]
# Open-vocabulary transcription (held-out voices and sentences), spoken questions by cloze with audio
# and in writing (the modality gap), and the quickstart's closed-vocabulary tasks. With CTC_WEIGHT
# (chosen on the valid split: python scripts/ctc_weight_sweep.py RUN data/synth_smol/valid.jsonl), the
# open-vocabulary transcription is scored with joint CTC/LLM decoding (4 beams) as well.
set -euo pipefail
run="${1:?usage: smol_eval.sh RUN_DIR [CTC_WEIGHT]}"
ctc_weight="${2:-}"
out="$run/test_eval"
mkdir -p "$out"
moeaudio eval --checkpoint "$run" --task asr_open --output "$out/asr_open.json" --json > /dev/null
if [ -n "$ctc_weight" ]; then
  moeaudio eval --checkpoint "$run" --task asr_open --num-beams 4 --ctc-weight "$ctc_weight" \
    --output "$out/asr_open.joint.json" --json > /dev/null
fi
moeaudio eval --checkpoint "$run" --task spoken_qa --scoring cloze --output "$out/spoken_qa.cloze.json" --json > /dev/null
for task in asr intent gender speaking_rate instrument chord tempo sound background mcq; do
  moeaudio eval --checkpoint "$run" --task "$task" --output "$out/$task.json" --json > /dev/null
done
echo "results in $out"
