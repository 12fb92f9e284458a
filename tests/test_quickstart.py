"""`videolm quickstart`, reduced: both quick-start configs for a few steps on the shared 40-video corpus,
then the bundled captioner on test videos and the hints."""

import os
import re
import subprocess
import sys
from pathlib import Path

CONFIGS = [Path("configs/mean_clip/quickstart.yaml").resolve(), Path("configs/xclip/quickstart.yaml").resolve()]


def test_quickstart_trains_both_models_and_prints_table_examples_and_hints(corpus, tmp_path):
    args = [sys.executable, "-m", "videolm.cli", "quickstart", "--data", str(corpus), "--examples", "2"]
    for config in CONFIGS:
        args += ["--config", str(config)]
    args += ["--", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
             "--trainer.limit_test_batches=2", "--data.init_args.num_workers=0", "--data.init_args.batch_size=4",
             "--trainer.enable_progress_bar=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "fine-tuning clip-tiny" in text
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^  (FrameMeanCLIP|XCLIPClassifier)\s+([\d.]+)%", text, re.M)}
    assert set(rows) == {"FrameMeanCLIP", "XCLIPClassifier"} and all(0 <= v <= 100 for v in rows.values())
    assert "capped at 50%" in text
    truths = re.findall(r"caption: (.+?)   \(truth: (.+)\)", text)
    assert len(truths) == 2 and all(t.startswith("a ") for _, t in truths)
    assert "the bundled translator (gfslt-tiny)" in text and "(truth: " in text
    checkpoints = re.findall(r"^  (?:FrameMeanCLIP|XCLIPClassifier): (\S+\.ckpt)$", text, re.M)
    assert len(checkpoints) == 2 and all((tmp_path / c).is_file() for c in checkpoints)
    assert f"videolm classify --model {checkpoints[1]} " in text
    assert "videolm caption " in text and "videolm fit --config " in text
