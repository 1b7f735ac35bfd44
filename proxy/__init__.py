"""order-proxy: a read-through caching proxy in front of Juspay's Order Status API."""

__version__ = "0.1.0"
