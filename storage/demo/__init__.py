"""The seeded demo social network: `world` (users, posts, history), `preferences` (the hidden
like model the traffic simulator reuses) and `texts` (post texts with hidden sub-themes)."""
