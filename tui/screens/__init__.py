"""Full screens pushed over the chat (sessions, …)."""
