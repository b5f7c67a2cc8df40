"""Pure drift logic: comparing fact maps. No aiohttp, grpc or store imports here."""
