"""The README's smol table from the results scripts/smol_eval.sh wrote (RUN/test_eval/*.json), one
column per run, and each stage's wall time from RUN/stages.json.

    python scripts/smol_table.py runs/smol runs/smol_dense
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CLOSED = (
    "asr",
    "intent",
    "gender",
    "speaking_rate",
    "instrument",
    "chord",
    "tempo",
    "sound",
    "background",
    "mcq",
)


def _read(run: Path, name: str) -> dict:
    path = run / "test_eval" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def rows(run: Path) -> dict[str, str]:
    out = {}
    asr_open = _read(run, "asr_open").get("metrics", {})
    out["open-vocabulary WER (held-out voices and sentences)"] = _cell(asr_open.get("wer"))
    joint = _read(run, "asr_open.joint")
    wer, decoding = joint.get("metrics", {}).get("wer"), joint.get("decoding", {})
    out["same, joint CTC/LLM decoding"] = (
        "-" if wer is None else f"{wer:.3f} (W {decoding['ctc_weight']:g}, {decoding['num_beams']} beams)"
    )
    qa = _read(run, "spoken_qa.cloze")
    m, t = qa.get("metrics", {}), qa.get("text_metrics", {})
    out["spoken questions, audio, cloze acc"] = _cell(m.get("accuracy"))
    out["same questions in writing, cloze acc"] = _cell(t.get("accuracy"))
    gap = qa.get("modality_gap")
    out["modality gap (audio - text)"] = _cell(gap.get("accuracy") if isinstance(gap, dict) else gap)
    for task in CLOSED:
        metrics = _read(run, task).get("metrics", {})
        key = "wer" if task == "asr" else "accuracy"
        out[f"{task} ({'WER' if key == 'wer' else 'acc'})"] = _cell(metrics.get(key))
    stages = run / "stages.json"
    if stages.exists():
        for row in json.loads(stages.read_text()):
            secs = row.get("wall_seconds")
            out[f"stage {row['stage']} wall time"] = "-" if secs is None else f"{secs / 60:.1f} min"
    return out


def main() -> None:
    runs = [Path(a) for a in sys.argv[1:]]
    table = [rows(r) for r in runs]
    print("| | " + " | ".join(r.name for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for key in table[0]:
        print(f"| {key} | " + " | ".join(t.get(key, "-") for t in table) + " |")


if __name__ == "__main__":
    main()
