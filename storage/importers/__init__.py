"""Importers that fill users/posts/feed from the feed CSV layout, MovieLens 100K or PostgreSQL."""
