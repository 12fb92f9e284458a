"""videolm: image-pretrained vision-language backbones extended to video."""

__version__ = "0.1.0"
