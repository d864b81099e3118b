"""Configuration: the frozen settings and their modes (``settings``), and the TOML loader
(``loader``), which reads the file in sections (``journal_log``, ``clouds``, ``jobs``) on the
typed getters and problem collector of ``checks``, importing credentials from the OpenStack
conventions (``sources``: clouds.yaml and ``OS_*``)."""
