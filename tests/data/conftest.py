"""Helpers for the data tests: a PHOENIX-2014-T layout (corpus CSVs + PNG frame folders)."""

import numpy as np
from PIL import Image

PHOENIX_HEADER = "name|video|start|end|speaker|orth|translation\n"
SAMPLES = {
    "train": [
        ("01April_2010_Thursday_heute-6694", "Signer04", "REGEN KOMMEN", "am tag regnet es", 5),
        ("01April_2010_Thursday_heute-6695", "Signer01", "SONNE", "morgen scheint die sonne", 3),
    ],
    "dev": [("11August_2010_Wednesday_tagesschau-2", "Signer08", "DRUCK TIEF KOMMEN",
             "tiefer luftdruck bestimmt unser wetter", 4)],
    "test": [("25October_2010_Monday_tagesschau-17", "Signer01", "WIND", "es weht wind", 2)],
}


def write_frames(folder, count, height=26, width=21):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((height, width, 3), 10 * i, np.uint8)).save(folder / f"images{i + 1:04d}.png")


def write_phoenix(root, samples=SAMPLES):
    (root / "annotations" / "manual").mkdir(parents=True)
    for split, rows in samples.items():
        lines = [PHOENIX_HEADER]
        for name, speaker, orth, text, frames in rows:
            # the video column of the download names another folder layout; the reader must not use it
            lines.append(f"{name}|{name}/1/*.png|-1|-1|{speaker}|{orth}|{text}\n")
            write_frames(root / "features" / "fullFrame-210x260px" / split / name, frames)
        (root / "annotations" / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv").write_text("".join(lines))
    return root
