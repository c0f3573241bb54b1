"""Online experiment analysis: metrics pushed down to SQL, per phase, then pure statistics."""
