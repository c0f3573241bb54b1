"""The seeded demo social network: `world` (users, posts, history), `preferences` (the hidden
like model the traffic simulator reuses), `policy` (which posts the history shows: browsing and
a taste-aware logging recommender) and `texts` (post texts with hidden sub-themes)."""
