#!/usr/bin/env bash
# Render every avmix mode from the example tracks into OUTDIR (default: out), procedural backend only.
#   bash examples/render_all.sh out      (needs `avmix` on PATH; `make demo` arranges that)
set -euo pipefail

out="${1:-out}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
drums="$here/drums.wav" pad="$here/pad.wav" birds="$here/birds.wav" rain="$here/rain.flac"
mkdir -p "$out"
start=$SECONDS
if [ ! -f "$drums" ] || [ ! -f "$pad" ] || [ ! -f "$birds" ] || [ ! -f "$rain" ]; then
    python "$here/make_examples.py"  # the venv's python when run by `make demo`
fi

step() { echo "== $*" >&2; "$@"; }

# the audio stage on its own
step avmix mix "$drums" "$pad" "$birds" "$rain" --gain 0 --gain -3 --gain 0 --gain -2 -o "$out/mix.wav" -y -q
step avmix concat "$drums" "$pad" "$birds" --crossfade 1 -o "$out/concat.wav" -y -q
step avmix overlay "$rain" "$birds" --at 2 --duck 6 -o "$out/overlay.wav" -y -q

# sounding videos: every mode
step avmix generate "$drums" "$pad" "$birds" "$rain" --gain 0 --gain -3 --gain 0 --gain -2 \
    --label "drum loop" --label "synth pad" --label "birds" --label "rain" --captions \
    --backend procedural --size 1280x720 --seed 1 -o "$out/demo.mp4" --preview "$out/demo.png" -y -q
step avmix generate "$drums" "$pad" "$birds" --mode concat --crossfade 1 --captions \
    --backend procedural --size 640x360 -o "$out/concat.mp4" -y -q
step avmix generate "$rain" "$birds" --mode overlay --at 2 --duck 6 --label "rain" --label "birds" --captions \
    --backend procedural --size 640x360 -o "$out/overlay.mp4" -y -q

echo "rendered into $out/ in $((SECONDS - start)) s:" >&2
ls -l "$out" >&2
