"""Write model_zoo.md from the zoo registry (built-in and bundled cards): python3 scripts/make_model_zoo.py

Same as ``videolm zoo markdown --out model_zoo.md`` (run it with the package installed: ``pip install -e .``).
"""

from pathlib import Path

from videolm.zoo.registry import markdown

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "model_zoo.md"
    out.write_text(markdown() + "\n")
    print(f"wrote {out}")
