"""The cloud side, the only code that speaks HTTP: ``transport`` (one aiohttp session per tenant,
the retry loop, the one mapping of aiohttp's errors), ``retry`` (backoff), ``client`` (one typed
method per Image API call), ``auth`` (Keystone v2.0 tokens and the catalog) and ``sessions``
(one authenticated session per cloud of a config)."""
