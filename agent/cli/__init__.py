"""``cachebot``: the terminal front end. It only translates between a person at a terminal and ``Agent``.

``main.py`` assembles the ``cachebot`` command from thin typer commands, one module per job: ``ask.py`` (ask,
approve, deny), ``chat.py``, ``history.py`` (history, stats), ``db.py``, ``recover.py``, ``draw.py`` (graph),
``trace.py`` (trace);
``options.py`` holds what they share (options, loading the config or the audit trail) and ``output.py`` what a
person sees (rich rendering, progress, one-line warnings, exit codes). The ``demo`` commands are
``agent.demo.commands``; other packages add theirs through entry points (``plugins.py``): the Slack app's
``slack`` and ``digest`` live in ``slack_app/cli.py``, so nothing here imports ``slack_app``.
"""
