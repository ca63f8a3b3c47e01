"""The demo room: ``cachebot demo`` and the real local cache stack the demo and the tests run against.

demo origin (+ Redis app cache) <- Varnish <- nginx edge, on free loopback ports:

- :mod:`agent.demo.commands`: ``cachebot demo up|down|show|edit``;
- :mod:`agent.demo.stack`: the whole stack (``start_stack``, ``load_stack``, ``Stack.config_dict``);
- :mod:`agent.demo.procs`: one daemon each (varnishd, nginx, redis-server, memcached, the origin);
- :mod:`agent.demo.origin`: the demo shop and its ``ContentStore``;
- ``varnish.vcl.tmpl`` and ``nginx.conf.tmpl``: the purge configuration cachebot expects (see README).

In the product only the CLI's ``demo`` command imports it; the tests and benchmarks start the same stack. It ships
in the package so that ``pip install`` brings the demo and its templates along.
"""
