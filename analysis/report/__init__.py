"""Renderings of an analysis dict: rich terminal table, JSON, self-contained HTML."""
