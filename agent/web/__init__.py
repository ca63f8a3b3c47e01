"""The web console (``cachebot web``): a read-only window on the audit trail and the runs, for the people who run
cachebot. Server-rendered (Starlette and Jinja2); the one script and the stylesheet it loads ship in this package
(``static/``), the pages in ``templates/``; ``app.py`` has the pages, ``security.py`` who may read them,
``charts.py`` the SVG charts. The CLI imports it only when ``cachebot web`` runs."""
