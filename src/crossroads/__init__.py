"""Crossroads: a self-hosted, OpenRouter-compatible LLM router."""

__version__ = "0.1.0"
