"""Reusable layers. Imports nothing of videolm beyond this package; only torch and einops."""

from .attention import MultiheadAttention, attention

__all__ = ["MultiheadAttention", "attention"]
