"""Browsing the catalog: its models filtered and sorted by a query."""
