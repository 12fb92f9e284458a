"""Reading pickled files that come from elsewhere without running any of their code.

Official checkpoints of several methods (TVTS, GFSLT-VLP, open_clip training runs) pickle other
objects beside their tensors: an ``argparse.Namespace`` of the training arguments, optimizer state,
numpy scalars. ``torch.load(weights_only=True)`` refuses such files whole. :func:`load_checkpoint`
reads them with an unpickler that rebuilds tensors and plain containers only; every other object
becomes an :class:`Opaque` placeholder that records its name and the data it was built from, so no
constructor, ``__setstate__`` or ``__reduce__`` of a foreign class ever runs. :func:`load_pickle`
does the same for plain (non-torch) pickles, gzip-compressed or not (GFSLT's ``labels.*`` files).
"""

from __future__ import annotations

import gzip
import io
import pickle
import types
from pathlib import Path
from typing import IO, Any

# Globals a checkpoint may name that only rebuild data: tensors (the torch helpers below), dtypes
# and sizes, and the standard library's plain containers.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("builtins", "range"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch.nn.parameter", "Parameter"),
}


class Opaque:
    """Stands in for an object of a class that was not rebuilt. ``name`` is ``module.qualname``;
    ``args`` what it was constructed from; ``state`` what would have been set on it."""

    name = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):  # an opaque function that was called: record the call
        return _opaque(f"{self.name}()")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Opaque({self.name})"

    def as_dict(self) -> dict:
        """The state as a dict where it was one (``argparse.Namespace`` and most plain objects)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}
        return dict(state) if isinstance(state, dict) else {}


def _opaque(name: str) -> type:
    return type("Opaque", (Opaque,), {"name": name})


def _reconstructor(cls, base, state):  # copyreg._reconstructor for protocol 0/1 pickles
    return cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, Opaque) else _opaque(str(cls))()


def _find_class(module: str, name: str, tensors: bool):
    if (module, name) in _SAFE_GLOBALS and (tensors or not module.startswith("torch")):
        return getattr(__import__(module, fromlist=[name]), name)
    if tensors and module == "torch":
        import torch

        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            return value
    if (module, name) == ("copyreg", "_reconstructor"):
        return _reconstructor
    if (module, name) == ("builtins", "object"):
        return object
    return _opaque(f"{module}.{name}")


class _Unpickler(pickle.Unpickler):
    tensors = False

    def find_class(self, module, name):
        return _find_class(module, name, self.tensors)


class _TensorUnpickler(_Unpickler):
    tensors = True


# torch.load takes a "pickle module": anything with an Unpickler (and load) attribute.
_torch_pickle = types.SimpleNamespace(Unpickler=_TensorUnpickler, load=pickle.load, __name__="videolm_safe_pickle")


def load_checkpoint(path: str | Path | IO[bytes], map_location: str = "cpu") -> Any:
    """The contents of a torch checkpoint: tensors and plain containers, other objects as
    :class:`Opaque`. Tries ``torch.load(weights_only=True)`` first; on a file it refuses, the
    restricted unpickler above. Raises ``ValueError`` naming the file when it is not a checkpoint."""
    import torch

    name = str(getattr(path, "name", path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass  # pickles objects beside its tensors
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{name}: not a readable torch checkpoint ({_first_line(e)})") from None
    if hasattr(path, "seek"):
        path.seek(0)
    try:
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_torch_pickle)
    except Exception as e:  # anything the restricted unpickler meets is a malformed file, not ours to run
        raise ValueError(f"{name}: not a readable torch checkpoint ({_first_line(e)})") from None


def load_pickle(path: str | Path) -> Any:
    """A plain pickle file (gzip-compressed or not): builtins and containers, other objects as
    :class:`Opaque`. Raises ``ValueError`` naming the file when it is not a pickle."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: damaged gzip data ({_first_line(e)})") from None
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except Exception as e:
        raise ValueError(f"{path}: not a readable pickle ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
