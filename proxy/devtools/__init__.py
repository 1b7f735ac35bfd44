"""Tools for trying the proxy: the Juspay simulator and the demo."""
