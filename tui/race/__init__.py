"""The race screen: two models answer the same prompt side by side."""
