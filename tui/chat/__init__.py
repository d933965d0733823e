"""The chat screen: message list, prompt input, telemetry panel."""
