"""Write model_zoo.md from the zoo registry (built-in and bundled cards): python scripts/make_model_zoo.py

Same as ``videolm zoo markdown --out model_zoo.md``.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from videolm.zoo.registry import markdown  # noqa: E402

if __name__ == "__main__":
    out = ROOT / "model_zoo.md"
    out.write_text(markdown() + "\n")
    print(f"wrote {out}")
