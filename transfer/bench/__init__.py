"""``image-transfer bench``: what a real link between two regions gives, measured with the
tool's own client and engine.

- ``markers``: the run id, and how a bench's images are told from everyone else's;
- ``figures``: the measurements, the knee of the curve and which side limits (pure);
- ``chart``: throughput against transfers, as SVG (or PNG with matplotlib);
- ``synthetic``: the random bytes of the test images;
- ``moves``: download alone and upload alone, with N transfers at once;
- ``copying``: the full verified copy, run by the engine itself;
- ``latency``: single calls, p50 and p95, and the time to first byte;
- ``ledger``: what a bench created, and the deletion of it (``bench --cleanup`` too);
- ``runner``: the whole bench, from the test images to the cleanup;
- ``report``: the lines a bench prints and its JSON document.

``benchmarks/`` (``make bench``) measures the engine on loopback; this package measures a
user's link.
"""
