"""The collector's HTTP query API (aiohttp), served under /api/v1 with its own OpenAPI document."""
