"""image-transfer: asynchronous bulk transfer and migration engine for NHN Cloud images.

Importing the package costs nothing: each command imports what it uses (structlog through
``transfer.log``, only when a line is logged or a job's engine is loaded)."""

__version__ = "0.1.0"
