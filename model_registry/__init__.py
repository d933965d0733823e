"""Where models come from and what they are (no Textual import)."""
