"""image-transfer: asynchronous bulk transfer and migration engine for NHN Cloud images."""

__version__ = "0.1.0"
