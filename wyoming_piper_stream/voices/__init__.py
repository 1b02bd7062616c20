"""Voice management: finding voice files, downloading, the split cache, building a ready voice.

Imports the engine, never the server.
"""
