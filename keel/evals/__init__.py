"""The eval harness: the scorecard that compares Keel with a plain LangGraph agent."""
