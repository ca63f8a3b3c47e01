"""Where cachebot keeps its records: checkpoints, the audit trail, claims, thread locks and the runs in flight."""
