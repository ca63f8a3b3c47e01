"""Bolt listeners: each one wraps what Slack sent in a typed job (``slack_app/jobs.py``), hands it to the
dispatcher and acks, whatever happens, in microseconds. The work is in ``slack_app/handlers.py``.

``events.py``: message events (mentions, DMs, replies in our threads). ``actions.py``: button clicks.
``commands.py``: the ``/cachebot`` slash command. ``shortcuts.py``: the message shortcut and its modal.
``slack_app/app.py`` registers them all on the Bolt app.
"""
