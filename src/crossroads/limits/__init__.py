"""Admission control: what a key and the account may spend and how often; counters shared
through Redis."""
