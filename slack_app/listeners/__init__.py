"""Bolt listeners: each one wraps what Slack sent in a typed job (``slack_app/jobs.py``), hands it to the
dispatcher and acks, whatever happens, in microseconds. The work is in ``slack_app/handlers.py``.

``events.py``: message events (mentions, DMs, replies in our threads). ``actions.py``: button clicks. The app has
no slash commands. ``slack_app/app.py`` registers both on the Bolt app.
"""
