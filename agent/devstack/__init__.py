"""A real local cache stack for demos and tests: demo origin (+ Redis app cache) <- Varnish <- nginx.

See :mod:`agent.devstack.stack` (``start_stack``), :mod:`agent.devstack.procs` (single daemons) and
:mod:`agent.devstack.origin` (the demo shop and its ``ContentStore``).
"""

from agent.devstack.origin import ContentStore, OriginServer, serve_in_thread
from agent.devstack.procs import (
    Daemon,
    DaemonError,
    MissingBinary,
    free_port,
    start_memcached,
    start_nginx,
    start_origin,
    start_redis,
    start_varnish,
)
from agent.devstack.stack import Stack, load_stack, start_stack, stop_saved_stack

__all__ = [
    "ContentStore", "Daemon", "DaemonError", "MissingBinary", "OriginServer", "Stack", "free_port", "load_stack",
    "serve_in_thread", "start_memcached", "start_nginx", "start_origin", "start_redis", "start_stack",
    "start_varnish", "stop_saved_stack",
]
