"""What front ends call: the ``Agent`` (ask, decide, offers, results), its typed progress events, and crash recovery.

Front ends (``agent/cli``, ``slack_app``) import from here and never from the graph's nodes or state keys."""
