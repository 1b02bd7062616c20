"""The web page (``--web-server``): voices, "try it", custom voices, status.

Served by the server's own process on its event loop (aiohttp). It imports the
voices layer and the server's stats; only ``__main__`` imports it.
"""
