"""Loopback fakes of cache purge APIs (Cloudflare, Fastly, an in-house webhook) and of a CDN edge.

For tests and benchmarks. Each fake is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1, port 0, in a daemon
thread (one thread per connection, so ``latency_seconds`` delays each request without blocking the others). See
``FakeServer`` (tests/fakes/base.py) for what every fake records and how to script failures.
"""

from tests.fakes.base import FakeEdge, FakeRecorder, FakeServer, Recorded
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.fastly import FakeFastly
from tests.fakes.webhook import FakeWebhook

__all__ = ["FakeCloudflare", "FakeEdge", "FakeFastly", "FakeRecorder", "FakeServer", "FakeWebhook", "Recorded"]
