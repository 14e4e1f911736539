"""Keel: a production-grade AI agent runtime on LangGraph."""
