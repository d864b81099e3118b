"""Configuration: the frozen settings (``settings``), the TOML loader (``loader``) and the
OpenStack conventions it imports from (``sources``: clouds.yaml and ``OS_*``)."""
