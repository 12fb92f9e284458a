"""Model zoo: cards (``registry``) and verified, cached downloads (``download``).

``resolve(name)`` returns the local folder of a model, downloading and converting it on first use.
"""

from videolm.zoo.download import (
    ChecksumError,
    ConversionError,
    DownloadError,
    OfflineError,
    ZooError,
    home,
    load_clip,
    open_clip_id,
    resolve,
)
from videolm.zoo.registry import ModelCard, RegistryError, add_registry, get_card, list_cards

__all__ = [
    "ChecksumError",
    "ConversionError",
    "DownloadError",
    "ModelCard",
    "OfflineError",
    "RegistryError",
    "ZooError",
    "add_registry",
    "get_card",
    "home",
    "list_cards",
    "load_clip",
    "open_clip_id",
    "resolve",
]
