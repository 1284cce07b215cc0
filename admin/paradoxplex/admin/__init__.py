"""The admin HTTP API (aiohttp) and its command-line client."""
