"""The live page: a read-only web page, and the JSON API behind it, of what the journal says
about the jobs (``image-transfer serve``, or ``--serve`` beside a run).

With an SQLite journal it shows one host's jobs; with PostgreSQL every worker of every host.

- ``server``: the aiohttp application, its routes and assets, and ``serving`` (listen, stop);
- ``security``: where it may listen, its token, the checks and headers of every request;
- ``views``: each job's document, read from the journal (entries, runs, leases, samples);
- ``throughput`` and ``chart``: the throughput over time from the samples, drawn as SVG;
- ``static/``: the page, its script and style (no network needed: nothing else is loaded).
"""

#: Where the page listens unless told otherwise: loopback only.
DEFAULT_LISTEN = "127.0.0.1:8077"
