"""videolm: image-pretrained vision-language backbones extended to video."""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing videolm stays cheap
    if name == "load":
        from videolm.infer import load

        return load
    raise AttributeError(f"module 'videolm' has no attribute {name!r}")
