"""Helpers the tests own: never imported by the product."""
